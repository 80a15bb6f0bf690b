"""Streaming quality counts: how right predictions were, once true labels come back.

A confusion table for classifiers; counts and the sums of errors' first, second and
fourth powers for regressors — fixed size whatever the rows, and mergeable (windows,
rolling windows). Metrics come from scikit-learn on the confusion table (its cells as
weighted samples), so they are the same numbers ``shipml test`` reports on the hold-out
rows. The model server (live ``shipml_quality``) and the monitor both count with it.

``chance`` says how likely a window of this many labels is to fall as far below the
hold-out by sampling alone, were the model as good as there: the monitor breaches only
on a loss that chance rarely gives (docs/monitoring.md).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

CLASSIFICATION_METRICS = ("accuracy", "f1_macro")
REGRESSION_METRICS = ("mae", "rmse")
OTHER = "(another label)"  # true labels past Quality.MAX_CELLS, when the answer was wrong


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
        self.abs_error = self.sq_error = self.quartic_error = 0.0

    VECTOR_FROM = 256  # rows from which one vectorised pass beats the loop
    MAX_CELLS = 10_000  # distinct (truth, prediction) pairs kept apart

    def add(self, truth: Sequence[Any], predicted: Sequence[Any]) -> None:
        if len(truth) >= self.VECTOR_FROM:
            self._add_many(truth, predicted)
            return
        for t, p in zip(truth, predicted, strict=False):
            if not present(t):
                continue
            if self.task == "classification":
                self._count(str(t), str(p), 1)
            else:
                try:
                    err = float(p) - float(t)
                except (TypeError, ValueError):
                    continue
                if not math.isfinite(err):
                    continue
                squared = err * err  # inf past 1e154, never OverflowError as ** raises
                self.abs_error += abs(err)
                self.sq_error += squared
                self.quartic_error += squared * squared
            self.n += 1

    def _add_many(self, truth: Sequence[Any], predicted: Sequence[Any]) -> None:
        """What ``add`` does row by row, in a few vectorised passes (pandas)."""
        import numpy as np
        import pandas as pd

        n = min(len(truth), len(predicted))
        t = pd.Series(np.asarray(truth, dtype=object)[:n], dtype=object)
        p = pd.Series(np.asarray(predicted, dtype=object)[:n], dtype=object)
        keep = t.notna() & (t != "")  # present(): not None, NaN or empty
        t, p = t[keep], p[keep]
        if self.task == "classification":
            pairs = pd.DataFrame({"t": t.map(str), "p": p.map(str)}).value_counts(sort=False)
            for pair, count in pairs.items():
                self._count(str(pair[0]), str(pair[1]), int(count))  # type: ignore[index]
            self.n += len(t)
            return
        err = pd.to_numeric(p, errors="coerce") - pd.to_numeric(t, errors="coerce")
        err = err[np.isfinite(err.to_numpy(dtype=np.float64))]
        with np.errstate(over="ignore"):  # inf, as row by row (a client's 1e200 label)
            self.abs_error += float(err.abs().sum())
            squared = err * err
            self.sq_error += float(squared.sum())
            self.quartic_error += float((squared * squared).sum())
        self.n += len(err)

    def _count(self, truth: str, predicted: str, count: int) -> None:
        """One cell more; past ``MAX_CELLS`` a wrong answer with a true label not seen yet
        counts under ``OTHER`` (labels come from clients: a million made-up ones must not
        take memory). Accuracy is unchanged: a wrong answer stays wrong, a right one
        (truth = a predicted class) keeps its own cell."""
        key = (truth, predicted)
        if len(self.cells) >= self.MAX_CELLS and key not in self.cells and truth != predicted:
            key = (OTHER, predicted)
        self.cells[key] += count

    def merge(self, other: Quality) -> None:
        for (truth, predicted), count in other.cells.items():
            self._count(truth, predicted, count)
        self.n += other.n
        self.abs_error += other.abs_error
        self.sq_error += other.sq_error
        self.quartic_error += other.quartic_error

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

    def chance(self, metric: str, holdout: float) -> float:
        """The one-sided p-value of this window's ``metric`` being at least this far
        beyond ``holdout`` (lower for accuracy and F1, higher for errors) by sampling
        alone: 1.0 when it is not beyond. Accuracy: the exact binomial at the hold-out's
        rate; MAE, RMSE (through the mean squared error): the normal approximation with
        the window's own spread; F1 (no closed form): the share of 1,000 resamples of
        the window's confusion table that reach the hold-out's (seeded: reproducible)."""
        if not self.n or not math.isfinite(holdout):
            return 1.0
        if metric == "accuracy":
            from scipy.stats import binom

            correct = sum(c for (t, p), c in self.cells.items() if t == p)
            return float(binom.cdf(correct, self.n, min(max(holdout, 0.0), 1.0)))
        if metric == "f1_macro":
            return _f1_chance(self.cells, self.n, holdout)
        if metric == "mae":
            return _beyond(self.abs_error, self.sq_error, self.n, holdout)
        if metric == "rmse":
            return _beyond(self.sq_error, self.quartic_error, self.n, holdout * holdout)
        return 1.0


def _beyond(total: float, total_sq: float, n: int, holdout: float) -> float:
    """P[a mean of n as large as total / n] when the true mean is ``holdout`` (normal
    approximation, the sample's own variance)."""
    mean = total / n
    if mean <= holdout:
        return 1.0
    spread = math.sqrt(max(total_sq / n - mean * mean, 0.0) / n)
    if spread == 0.0 or not math.isfinite(spread):
        return 0.0  # no spread, or errors too large to square twice: the bound decides
    from scipy.stats import norm

    return float(norm.sf((mean - holdout) / spread))


def _f1_chance(cells: Counter[tuple[str, str]], n: int, holdout: float, draws: int = 1000) -> float:
    import numpy as np
    from scipy.sparse import csr_matrix

    pairs = list(cells.items())
    labels = {name: i for i, name in enumerate(sorted({x for pair, _ in pairs for x in pair}))}
    truth = np.array([labels[t] for (t, _), _ in pairs])
    pred = np.array([labels[p] for (_, p), _ in pairs])
    counts = np.array([c for _, c in pairs], dtype=np.float64)
    shape, rows, ones = (len(pairs), len(labels)), np.arange(len(pairs)), np.ones(len(pairs))
    to_truth = csr_matrix((ones, (rows, truth)), shape=shape)
    to_pred = csr_matrix((ones, (rows, pred)), shape=shape)
    to_hit = csr_matrix(((truth == pred).astype(np.float64), (rows, truth)), shape=shape)
    rng, reached = np.random.default_rng(0), 0
    for start in range(0, draws, 100):  # bounded memory: 100 tables at a time
        tables = rng.multinomial(n, counts / counts.sum(), size=min(100, draws - start))
        tables = tables.astype(np.float64)
        both = (to_truth.T @ tables.T).T + (to_pred.T @ tables.T).T
        hits = (to_hit.T @ tables.T).T
        f1 = np.divide(2 * hits, both, out=np.zeros_like(both), where=both > 0).mean(axis=1)
        reached += int((f1 >= holdout - 1e-12).sum())
    return (reached + 1) / (draws + 1)
