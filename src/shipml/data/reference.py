"""The reference a window is compared with, read from a profile (``shipml.data.profile``:
per-column histogram, categories, missing values), the one every model package carries;
or built from values (the model's predictions on its hold-out rows)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OTHER = "__other__"  # the reference's rare categories, lumped (profile keeps the top 50)


@dataclass
class FeatureReference:
    """What the reference knows of one feature (or of the predictions)."""

    name: str
    numeric: bool
    rows: int  # present (non-missing) values
    missing: int
    edges: np.ndarray | None = None  # numeric: k + 1 ascending edges
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # numeric: k + 2 bins
    categories: list[str] = field(default_factory=list)  # categorical, OTHER last if any
    mean: float | None = None
    std: float | None = None
    # Made once, for counting (Counts): where each edge falls in a sorted chunk (the last
    # edge nudged up, so a value on it is in the last bin), and each category's bin.
    probes: np.ndarray = field(init=False, repr=False)
    index: dict[str, int] = field(init=False, repr=False)
    lumped: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        probes = np.zeros(0) if self.edges is None else self.edges.astype(np.float64)
        if len(probes):
            probes[-1] = np.nextafter(probes[-1], np.inf)
        self.probes = probes
        self.index = {c: i for i, c in enumerate(self.categories)}
        self.lumped = bool(self.categories) and self.categories[-1] == OTHER

    @property
    def missing_share(self) -> float:
        total = self.rows + self.missing
        return self.missing / total if total else 0.0

    @property
    def distinct(self) -> int:
        return int(np.count_nonzero(self.counts))

    @property
    def labels(self) -> list[str]:
        """A name per bin, for tables and charts."""
        if not self.numeric:
            return list(self.categories)
        e = self.edges if self.edges is not None else np.zeros(1)
        inner = [f"{_g(a)}–{_g(b)}" for a, b in itertools.pairwise(e)]
        return [f"< {_g(e[0])}", *inner, f"> {_g(e[-1])}"]

    @classmethod
    def from_profile(cls, name: str, column: Mapping[str, Any]) -> FeatureReference | None:
        """From one column of a profile; None when it holds nothing to compare with."""
        count, missing = int(column.get("count") or 0), int(column.get("missing") or 0)
        hist = column.get("histogram")
        if column.get("type") in ("int", "float") and hist and len(hist.get("edges", [])) > 1:
            inner = np.asarray(hist["counts"], dtype=np.int64)
            return cls(
                name,
                True,
                int(inner.sum()),
                missing,
                edges=np.asarray(hist["edges"], dtype=np.float64),
                counts=np.concatenate([[0], inner, [0]]),
                mean=column.get("mean"),
                std=column.get("std"),
            )
        top = column.get("top")
        if column.get("type") in ("string", "bool") and top:
            cats = [str(k) for k in top]
            counts = [int(v) for v in top.values()]
            rest = count - sum(counts)
            if rest > 0:
                cats.append(OTHER)
                counts.append(rest)
            return cls(name, False, count, missing, categories=cats, counts=np.asarray(counts))
        return None


def _g(x: float) -> str:
    return f"{x:.4g}"


@dataclass
class Reference:
    features: dict[str, FeatureReference]
    prediction: FeatureReference | None = None

    @classmethod
    def from_profile(
        cls,
        profile: Mapping[str, Any],
        features: list[str] | None = None,
        prediction: FeatureReference | None = None,
    ) -> Reference:
        columns = profile.get("columns") or {}
        names = features if features is not None else list(columns)
        refs = {}
        for name in names:
            ref = FeatureReference.from_profile(name, columns.get(name) or {})
            if ref is not None:
                refs[name] = ref
        return cls(refs, prediction)


def reference_of(name: str, values: Any) -> FeatureReference | None:
    """A reference built from values (e.g. the model's predictions on its hold-out rows)."""
    import pandas as pd

    from shipml.data.profile import column_profile

    return FeatureReference.from_profile(name, column_profile(pd.Series(values)))
