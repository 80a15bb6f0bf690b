"""Streaming quality counts: how right predictions were, once true labels come back.

A confusion table for classifiers; counts, absolute and squared errors for regressors —
fixed size whatever the rows, and mergeable (windows, rolling windows). Metrics come from
scikit-learn on the confusion table (its cells as weighted samples), so they are the same
numbers ``shipml test`` reports on the hold-out rows. The model server (live
``shipml_quality``) and the monitor both count with it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

CLASSIFICATION_METRICS = ("accuracy", "f1_macro")
REGRESSION_METRICS = ("mae", "rmse")


def present(value: Any) -> bool:
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
            if not present(t):
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
