"""Streaming drift statistics: a window of rows, counted against a reference profile.

A ``Reference`` is read from a profile (``shipml.data.profile``: per-column histogram,
categories, missing values) — the one every model package carries. A ``Window`` counts
rows into the reference's bins as they stream by (numeric: one bin below the range,
the reference's bins, one above; categorical: the reference's categories, ``other``
when the reference lumped rare ones, and ``unseen`` values), keeping per feature only
fixed-size counts and sums: memory does not grow with the rows. Windows merge, so a
rolling window is a ring of them. ``compare`` runs the tests of ``shipml.data.stattests``
on the counts and returns every statistic, threshold and verdict.

The model server (live metrics) and the monitor (`shipml monitor`) both use this module.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipml.data import stattests
from shipml.data.stattests import TestResult

OTHER = "__other__"  # the reference's rare categories, lumped (profile keeps the top 50)
MAX_UNSEEN = 1000  # distinct unseen values named per feature and window; more are counted


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


class Counts:
    """One feature's counts in a window: fixed size whatever the rows."""

    __slots__ = ("bins", "high", "low", "missing", "outside", "ref", "sum", "sumsq", "unseen")

    def __init__(self, ref: FeatureReference) -> None:
        self.ref = ref
        self.bins = np.zeros(len(ref.counts), dtype=np.int64)
        self.missing = 0
        self.sum = self.sumsq = 0.0
        self.low, self.high = math.inf, -math.inf
        self.outside = [0.0, 0.0]  # sums of the values below / above the reference's range
        self.unseen: dict[str, int] = {}

    @property
    def rows(self) -> int:
        return int(self.bins.sum()) + sum(self.unseen.values())

    def add(self, values: np.ndarray) -> None:
        if self.ref.numeric:
            self._add_numeric(values)
        else:
            self._add_categories(values)

    def _add_numeric(self, values: np.ndarray) -> None:
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        nan = np.isnan(x)
        missing = int(np.count_nonzero(nan))
        if missing:
            self.missing += missing
            x = x[~nan]
        if not len(x):
            return
        edges = self.ref.edges
        assert edges is not None
        last = len(edges) - 1
        index = _bin_index(x, edges)
        counts = np.bincount(index, minlength=len(self.bins))
        self.bins += counts
        total = float(x.sum())
        finite = x if math.isfinite(total) else x[np.isfinite(x)]
        if len(finite):
            self.sum += float(finite.sum()) if finite is not x else total
            self.sumsq += float(np.dot(finite, finite))
            self.low = min(self.low, float(finite.min()))
            self.high = max(self.high, float(finite.max()))
        if counts[0] or counts[-1]:  # values outside the reference's range (rare)
            for side, where in ((0, index == 0), (1, index == last + 1)):
                part = x[where]
                self.outside[side] += float(part[np.isfinite(part)].sum()) if len(part) else 0.0

    def _add_categories(self, values: np.ndarray) -> None:
        import pandas as pd

        # One hashing pass: counts of every value, missing ones (None, NaN, "") included.
        counted = pd.Series(np.asarray(values, dtype=object).reshape(-1)).value_counts(dropna=False)
        cats = self.ref.categories
        index = {c: i for i, c in enumerate(cats)}
        lumped = cats[-1] == OTHER if cats else False
        for value, n in counted.items():
            if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
                self.missing += int(n)
                continue
            text = str(value)
            i = index.get(text)
            if i is not None:
                self.bins[i] += n
            elif lumped:
                self.bins[-1] += n
            elif text in self.unseen or len(self.unseen) < MAX_UNSEEN:
                self.unseen[text] = self.unseen.get(text, 0) + int(n)
            else:
                self.unseen[OTHER] = self.unseen.get(OTHER, 0) + int(n)

    def merge(self, other: Counts) -> None:
        self.bins += other.bins
        self.missing += other.missing
        self.sum += other.sum
        self.sumsq += other.sumsq
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        self.outside = [self.outside[0] + other.outside[0], self.outside[1] + other.outside[1]]
        for k, v in other.unseen.items():
            self.unseen[k] = self.unseen.get(k, 0) + v


def _bin_index(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: 0 below the range, 1..k inside (the last bin includes its right
    edge, as np.histogram counts), k + 1 above."""
    index = np.searchsorted(edges, x, side="right")
    index[x == edges[-1]] = len(edges) - 1
    return index


class Window:
    """Counts of every referenced feature, and of the predictions, over some rows."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.features = {name: Counts(ref) for name, ref in reference.features.items()}
        self.prediction = Counts(reference.prediction) if reference.prediction else None
        self.rows = 0

    def add(self, columns: Mapping[str, Any], predictions: Any = None, rows: int = 0) -> None:
        """Count a batch: one array (or list, or Series) per feature name."""
        n = rows
        for name, counts in self.features.items():
            values = columns.get(name)
            if values is not None:
                counts.add(np.asarray(values))
                n = n or len(values)
        if predictions is not None and self.prediction is not None:
            self.prediction.add(np.asarray(predictions))
            n = n or len(predictions)
        self.rows += n

    def merge(self, other: Window) -> None:
        for name, counts in self.features.items():
            counts.merge(other.features[name])
        if self.prediction is not None and other.prediction is not None:
            self.prediction.merge(other.prediction)
        self.rows += other.rows


@dataclass(frozen=True)
class Settings:
    """How features are judged (``[monitor]`` in shipml.toml, see MonitorSection)."""

    methods: Mapping[str, str] = field(default_factory=dict)  # feature -> method ("auto")
    thresholds: Mapping[str, float] = field(default_factory=dict)  # feature -> threshold
    disabled: frozenset[str] = frozenset()
    drift_share: float = 0.5
    large_reference: int = 1000
    min_rows: int = 30
    max_missing_increase: float = 0.1
    max_unseen_share: float = 0.05
    max_out_of_range_share: float = 0.1

    @classmethod
    def from_config(cls, section: Any) -> Settings:
        """From a ``MonitorSection`` (the prediction's spec is keyed ``__prediction__``)."""
        specs = {**section.features, PREDICTION: section.prediction}
        return cls(
            methods={k: s.method for k, s in specs.items() if s.method != "auto"},
            thresholds={k: s.threshold for k, s in specs.items() if s.threshold is not None},
            disabled=frozenset(k for k, s in specs.items() if not s.enabled),
            drift_share=section.drift_share,
            large_reference=section.large_reference,
            min_rows=section.min_rows,
            max_missing_increase=section.max_missing_increase,
            max_unseen_share=section.max_unseen_share,
            max_out_of_range_share=section.max_out_of_range_share,
        )


PREDICTION = "__prediction__"


@dataclass
class FeatureDrift:
    name: str
    numeric: bool
    rows: int
    judged: bool  # enough rows and not disabled
    test: TestResult | None
    psi: TestResult | None
    missing_share: float
    reference_missing_share: float
    out_of_range_share: float
    unseen_share: float
    unseen: dict[str, int]
    flags: list[str]  # what breached: drift, missing, unseen, out_of_range
    labels: list[str]  # bin names
    reference_shares: list[float]
    current_shares: list[float]
    mean: float | None = None

    @property
    def drifted(self) -> bool:
        return "drift" in self.flags

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("test", "psi")}
        out["drifted"] = self.drifted
        out["test"] = self.test.to_dict() if self.test else None
        out["psi"] = self.psi.to_dict() if self.psi else None
        return out


def method_for(ref: FeatureReference, settings: Settings, key: str) -> str:
    """The configured method of a feature, else the default for its reference."""
    return settings.methods.get(key) or stattests.default_method(
        ref.numeric, ref.rows, ref.distinct, settings.large_reference
    )


def judge(ref: FeatureReference, counts: Counts, settings: Settings, key: str) -> FeatureDrift:
    """Every test and check of one feature."""
    bins = counts.bins
    unseen_total = sum(counts.unseen.values())
    present = int(bins.sum()) + unseen_total
    total = present + counts.missing
    judged = key not in settings.disabled and present >= settings.min_rows and ref.rows > 0
    test = psi = None
    if judged:
        method = method_for(ref, settings, key)
        test = stattests.verdict(
            method, _statistic(method, ref, counts), settings.thresholds.get(key)
        )
        psi = stattests.verdict("psi", stattests.psi(ref.counts, bins))
    missing_share = counts.missing / total if total else 0.0
    outside = int(bins[0] + bins[-1]) if ref.numeric else 0
    out_share = outside / present if present else 0.0
    unseen_share = unseen_total / present if present else 0.0
    flags = []
    if test is not None and test.drifted:
        flags.append("drift")
    if total >= settings.min_rows:
        if missing_share - ref.missing_share > settings.max_missing_increase:
            flags.append("missing")
        if unseen_share > settings.max_unseen_share:
            flags.append("unseen")
        if out_share > settings.max_out_of_range_share:
            flags.append("out_of_range")
    mean = counts.sum / present if ref.numeric and present else None
    return FeatureDrift(
        name=ref.name,
        numeric=ref.numeric,
        rows=total,
        judged=judged,
        test=test,
        psi=psi,
        missing_share=missing_share,
        reference_missing_share=ref.missing_share,
        out_of_range_share=out_share,
        unseen_share=unseen_share,
        unseen=dict(sorted(counts.unseen.items(), key=lambda kv: -kv[1])[:20]),
        flags=flags,
        labels=ref.labels,
        reference_shares=stattests.shares(ref.counts).tolist(),
        current_shares=stattests.shares(bins).tolist(),
        mean=mean,
    )


def _statistic(method: str, ref: FeatureReference, counts: Counts) -> float:
    r, c = ref.counts, counts.bins
    if method in stattests.NUMERIC_ONLY and not ref.numeric:
        method = "chisquare"  # a numeric method configured for a category: the safe test
    if method == "ks":
        return stattests.ks(r, c)
    if method == "wasserstein":
        assert ref.edges is not None
        return stattests.wasserstein(r, c, ref.edges, tuple(counts.outside), ref.std or 0.0)  # type: ignore[arg-type]
    if method == "z":
        keep = r > 0
        if ref.numeric or keep.sum() != 2:
            return stattests.chisquare(r, c)
        return stattests.z_test(r[keep], c[keep])
    if method == "chisquare":
        return stattests.chisquare(r, c)
    if method == "jensenshannon":
        return stattests.jensenshannon(r, c)
    return stattests.psi(r, c)


@dataclass
class DriftResult:
    rows: int
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    drift_share: float  # of judged features that drifted
    threshold: float

    @property
    def dataset_drift(self) -> bool:
        return any(f.judged for f in self.features) and self.drift_share >= self.threshold

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "drift_share_threshold": self.threshold,
            "drifted_features": self.drifted,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
        }


def compare(window: Window, settings: Settings | None = None) -> DriftResult:
    """Every feature's and the predictions' tests, and the dataset's verdict."""
    settings = settings or Settings()
    ref = window.reference
    features = [judge(ref.features[n], c, settings, n) for n, c in window.features.items()]
    prediction = None
    if ref.prediction is not None and window.prediction is not None:
        prediction = judge(ref.prediction, window.prediction, settings, PREDICTION)
    judged = [f for f in features if f.judged]
    share = sum(f.drifted for f in judged) / len(judged) if judged else 0.0
    return DriftResult(window.rows, features, prediction, share, settings.drift_share)
