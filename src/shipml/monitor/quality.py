"""Quality from feedback: how right the model is once true labels come back.

Counts stream like the drift counts (a confusion table for classifiers; counts, absolute
and squared errors for regressors), per window and per slice of ``[tests.model]
slices``. Metrics come from scikit-learn on the confusion table (its cells as weighted
samples), so they are the same numbers ``shipml test`` reports on the hold-out rows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipml.data.drift import FeatureReference

CLASSIFICATION_METRICS = ("accuracy", "f1_macro")
REGRESSION_METRICS = ("mae", "rmse")
MISSING = "(missing)"


def _present(value: Any) -> bool:
    return (
        value is not None and value != "" and not (isinstance(value, float) and math.isnan(value))
    )


class Quality:
    """Labelled predictions counted: enough to compute the task's metrics."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.cells: Counter[tuple[str, str]] = Counter()
        self.n = 0
        self.abs_error = self.sq_error = 0.0

    def add(self, truth: Iterable[Any], predicted: Iterable[Any]) -> None:
        for t, p in zip(truth, predicted, strict=False):
            if not _present(t):
                continue
            if self.task == "classification":
                self.cells[(str(t), str(p))] += 1
            else:
                try:
                    err = float(p) - float(t)
                except (TypeError, ValueError):
                    continue
                if not math.isfinite(err):
                    continue
                self.abs_error += abs(err)
                self.sq_error += err * err
            self.n += 1

    def merge(self, other: Quality) -> None:
        self.cells.update(other.cells)
        self.n += other.n
        self.abs_error += other.abs_error
        self.sq_error += other.sq_error

    def metrics(self) -> dict[str, float]:
        if not self.n:
            return {}
        if self.task != "classification":
            return {"mae": self.abs_error / self.n, "rmse": math.sqrt(self.sq_error / self.n)}
        from sklearn.metrics import accuracy_score, f1_score

        pairs = list(self.cells.items())
        truth = [t for (t, _), _ in pairs]
        pred = [p for (_, p), _ in pairs]
        weight = [n for _, n in pairs]
        return {
            "accuracy": float(accuracy_score(truth, pred, sample_weight=weight)),
            "f1_macro": float(
                f1_score(truth, pred, average="macro", sample_weight=weight, zero_division=0)
            ),
        }


class Slicer:
    """The slice a row belongs to for one feature: its category, or its quartile of the
    reference (numeric features)."""

    def __init__(self, name: str, ref: FeatureReference | None, quantiles: list[float]) -> None:
        self.name = name
        self.numeric = ref.numeric if ref is not None else False
        self.edges = sorted(q for q in quantiles if q is not None and math.isfinite(q))

    def key(self, value: Any) -> str:
        if not _present(value):
            return MISSING
        if not self.numeric:
            return str(value)
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
                if not _present(t):
                    continue
                key = slicer.key(values[i] if i < len(values) else None)
                group.setdefault(key, Quality(self.task)).add([t], [p])

    def to_dict(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            name: {k: {"labelled": q.n, **q.metrics()} for k, q in sorted(group.items())}
            for name, group in self.groups.items()
        }


def judge_quality(
    current: dict[str, float],
    reference: dict[str, float],
    labelled: int,
    *,
    max_drop: float,
    min_labels: int,
) -> list[dict[str, Any]]:
    """One verdict per metric: classification metrics may fall at most ``max_drop`` below
    the hold-out's, regression errors may grow at most that fraction above it."""
    out = []
    for metric, value in current.items():
        base = reference.get(metric)
        if base is None:
            continue
        if metric in REGRESSION_METRICS:
            bound, breached = base * (1 + max_drop), value > base * (1 + max_drop)
        else:
            bound, breached = base - max_drop, value < base - max_drop
        judged = labelled >= min_labels
        out.append(
            {
                "metric": metric,
                "value": value,
                "holdout": base,
                "bound": bound,
                "judged": judged,
                "breached": judged and breached,
            }
        )
    return out
