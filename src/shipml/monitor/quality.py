"""Quality from feedback per slice of ``[tests.model] slices``, and its verdicts against
the hold-out's metrics (the streaming counts are ``shipml.data.quality.Quality``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shipml.data.drift import OTHER, FeatureReference
from shipml.data.quality import Quality, present

REGRESSION_METRICS = ("mae", "rmse")
MISSING = "(missing)"
UNSEEN = "(not in the reference)"
OTHERS = "(other values)"
# Slices per feature: each is a table row and its metrics (about 2 ms each), so a feature
# whose values are all distinct (ids sent by clients) must not make one per value.
MAX_GROUPS = 100


class Slicer:
    """The slice a row belongs to for one feature: its category, or its quartile of the
    reference (numeric features)."""

    def __init__(self, name: str, ref: FeatureReference | None, quantiles: list[float]) -> None:
        self.name = name
        self.numeric = ref.numeric if ref is not None else False
        self.edges = sorted(q for q in quantiles if q is not None and math.isfinite(q))
        # A category the reference knows is its own slice; any other is one slice
        # (the reference's lumped rare ones when it has them).
        self.known = ref.index if ref is not None and not ref.numeric else None
        self.lumped = UNSEEN if ref is None or not ref.lumped else OTHER

    def key(self, value: Any) -> str:
        if not present(value):
            return MISSING
        if not self.numeric:
            text = str(value)
            return text if self.known is None or text in self.known else self.lumped
        try:
            x = float(value)
        except (TypeError, ValueError):
            return MISSING
        for i, edge in enumerate(self.edges):
            if x < edge:
                return f"< {edge:.4g}" if i == 0 else f"{self.edges[i - 1]:.4g}–{edge:.4g}"
        return f">= {self.edges[-1]:.4g}" if self.edges else "all"


@dataclass
class SliceQuality:
    slicers: list[Slicer]
    task: str
    groups: dict[str, dict[str, Quality]] = field(default_factory=dict)

    def add(self, columns: Mapping[str, list[Any]], truth: list[Any], predicted: list[Any]) -> None:
        for slicer in self.slicers:
            found = columns.get(slicer.name)
            values = [] if found is None else found
            group = self.groups.setdefault(slicer.name, {})
            for i, (t, p) in enumerate(zip(truth, predicted, strict=False)):
                if not present(t):
                    continue
                key = slicer.key(values[i] if i < len(values) else None)
                if key not in group and len(group) >= MAX_GROUPS:
                    key = OTHERS
                group.setdefault(key, Quality(self.task)).add([t], [p])

    def to_dict(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            name: {k: {"labelled": q.n, **q.metrics()} for k, q in sorted(group.items())}
            for name, group in self.groups.items()
        }


def judge_quality(
    quality: Quality,
    reference: dict[str, float],
    *,
    max_drop: float,
    min_labels: int,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """One verdict per metric: classification metrics may fall at most ``max_drop`` below
    the hold-out's, regression errors may grow at most that fraction above it; beyond
    that bound, a metric breaches when sampling alone gives so large a loss from the
    hold-out's with a probability below ``alpha`` (``p_value``; 1 judges by the bound)."""
    out = []
    for metric, value in quality.metrics().items():
        base = reference.get(metric)
        if base is None:
            continue
        if metric in REGRESSION_METRICS:
            bound, beyond = base * (1 + max_drop), value > base * (1 + max_drop)
        else:
            bound, beyond = base - max_drop, value < base - max_drop
        judged = quality.n >= min_labels
        p_value = quality.chance(metric, base) if judged and beyond and alpha < 1 else None
        out.append(
            {
                "metric": metric,
                "value": value,
                "holdout": base,
                "bound": bound,
                "judged": judged,
                "p_value": p_value,
                "breached": judged and beyond and (p_value is None or p_value < alpha),
            }
        )
    return out
