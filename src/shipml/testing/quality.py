"""The quality metrics of a model on rows (accuracy, F1, ROC AUC; MAE, RMSE, R²), which of
them is primary for a task, and which way is better: shared by the model checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipml.testing.subject import Subject

HIGHER_IS_BETTER = {
    "accuracy": True,
    "f1_macro": True,
    "roc_auc_ovr": True,
    "r2": True,
    "rmse": False,
    "mae": False,
}


def quality_metrics(subject: Subject, y: pd.Series, labels: Any, proba: Any) -> dict[str, float]:
    """accuracy, f1_macro, roc_auc_ovr for classifiers; rmse, mae, r2 for regressors."""
    from sklearn import metrics as m

    if subject.task == "classification":
        out = {
            "accuracy": float(m.accuracy_score(y, labels)),
            "f1_macro": float(m.f1_score(y, labels, average="macro")),
        }
        classes = list(subject.signature.classes)
        if proba is not None and len(set(y)) > 1:
            if len(classes) == 2:
                out["roc_auc_ovr"] = float(m.roc_auc_score(y == classes[1], proba[:, 1]))
            else:  # one-vs-rest, macro, over the classes present in these rows
                yv = np.asarray(y)
                aucs = [
                    m.roc_auc_score(yv == c, proba[:, i])
                    for i, c in enumerate(classes)
                    if 0 < (yv == c).sum() < len(yv)
                ]
                if aucs:
                    out["roc_auc_ovr"] = float(np.mean(aucs))
        return out
    yv, pv = np.asarray(y, dtype=float), np.asarray(labels, dtype=float)
    return {
        "rmse": float(np.sqrt(np.mean((yv - pv) ** 2))),
        "mae": float(np.mean(np.abs(yv - pv))),
        "r2": float(m.r2_score(yv, pv)),
    }


def primary(subject: Subject) -> str:
    return "accuracy" if subject.task == "classification" else "rmse"


def reaches(value: float, bound: float, *, higher: bool = True) -> bool:
    """``value >= bound`` (``<=`` when not ``higher``), up to the rounding of a bound that
    was computed: 0.85 reaches 0.8 + 0.05, which is 0.8500000000000001 in floating point,
    and an RMSE of 0.2 reaches "champion - 0.1" of 0.3 (0.19999999999999998). NaN
    reaches nothing."""
    slack = 1e-12 * max(1.0, abs(bound))
    return bool(value >= bound - slack) if higher else bool(value <= bound + slack)


def better(metric: str, a: float, b: float, margin: float = 0.0) -> bool:
    """a beats b by at least ``margin`` (strictly when margin is 0; at the margin up to
    rounding, see ``reaches``)."""
    higher = HIGHER_IS_BETTER.get(metric, True)
    if margin == 0:
        return bool(a > b) if higher else bool(a < b)
    return reaches(a, b + margin if higher else b - margin, higher=higher)


def holdout_metrics(subject: Subject) -> dict[str, float]:
    _, y = subject.holdout
    labels, proba = subject.holdout_predictions
    return quality_metrics(subject, y, labels, proba)
