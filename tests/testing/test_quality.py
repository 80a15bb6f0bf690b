"""The quality metrics the model checks and gates decide on are scikit-learn's, on
adversarial rows (a class never predicted, a class absent from the rows, labels that
are not strings, a constant target), and "better" goes the metric's way."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from shipml.testing import model_checks
from shipml.testing.quality import better, quality_metrics


def subject(task: str, classes=()) -> SimpleNamespace:
    return SimpleNamespace(task=task, signature=SimpleNamespace(classes=list(classes)))


def probabilities(rng, n: int, k: int) -> np.ndarray:
    p = rng.dirichlet(np.ones(k), size=n)
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [[0, 1], ["no", "yes"], ["a", "b", "c"], [3, 7, 9, 11]])
def test_classification_metrics_are_sklearns(classes):
    rng = np.random.default_rng(len(classes))
    n = 300
    y = pd.Series(rng.choice(classes, n))
    proba = probabilities(rng, n, len(classes))
    labels = np.asarray(classes)[proba.argmax(axis=1)]
    labels[labels == classes[-1]] = classes[0]  # a class never predicted: its F1 is 0
    got = quality_metrics(subject("classification", classes), y, labels, proba)
    assert got["accuracy"] == metrics.accuracy_score(y, labels)
    assert got["f1_macro"] == pytest.approx(
        metrics.f1_score(y, labels, average="macro", zero_division=0), abs=1e-15
    )
    if len(classes) == 2:
        expected = metrics.roc_auc_score(y, proba[:, 1])  # classes sorted: [1] is positive
    else:
        expected = metrics.roc_auc_score(
            y, proba, multi_class="ovr", average="macro", labels=classes
        )
    assert got["roc_auc_ovr"] == pytest.approx(expected, abs=1e-12)


def test_auc_over_the_classes_present_and_none_for_one_class():
    classes = ["a", "b", "c"]
    rng = np.random.default_rng(3)
    y = pd.Series(rng.choice(["a", "b"], 200))  # "c" absent from these rows
    proba = probabilities(rng, 200, 3)
    got = quality_metrics(subject("classification", classes), y, np.asarray(y), proba)
    expected = np.mean([metrics.roc_auc_score(y == c, proba[:, i]) for i, c in enumerate("ab")])
    assert got["roc_auc_ovr"] == pytest.approx(expected)
    one = quality_metrics(
        subject("classification", classes), pd.Series(["a"] * 5), ["a"] * 5, proba[:5]
    )
    assert "roc_auc_ovr" not in one and one["accuracy"] == 1.0


def test_regression_metrics_are_sklearns_and_better_goes_the_metric_s_way():
    rng = np.random.default_rng(5)
    y = pd.Series(rng.normal(100, 20, 500))
    pred = y + rng.standard_t(2, 500) * 5  # heavy tails
    got = quality_metrics(subject("regression"), y, pred, None)
    assert got["rmse"] == pytest.approx(np.sqrt(metrics.mean_squared_error(y, pred)), rel=1e-12)
    assert got["mae"] == pytest.approx(metrics.mean_absolute_error(y, pred), rel=1e-12)
    assert got["r2"] == pytest.approx(metrics.r2_score(y, pred), rel=1e-12)
    assert better("rmse", 1.0, 2.0) and not better("rmse", 2.0, 1.0)
    assert better("accuracy", 0.9, 0.8) and not better("accuracy", 0.8, 0.8)
    assert better("accuracy", 0.85, 0.8, 0.05) and not better("accuracy", 0.84, 0.8, 0.05)
    assert better("mae", 0.95, 1.0, 0.05) and not better("mae", 0.96, 1.0, 0.05)


def test_log_loss_of_the_feature_importance_check_is_sklearns():
    classes = ["a", "b", "c"]
    rng = np.random.default_rng(8)
    y = pd.Series(rng.choice(classes, 400))
    proba = probabilities(rng, 400, 3)
    proba[0] = [1.0, 0.0, 0.0]  # certain: clipped, not infinite
    y[0] = "b"
    got = model_checks._loss(subject("classification", classes), y, None, proba)
    assert got == pytest.approx(metrics.log_loss(y, proba, labels=classes), rel=1e-12)
    assert np.isfinite(got)


def test_expected_calibration_error_is_the_binned_formula():
    """ECE = sum over 10 equal-width bins (lo, hi] of the top probability of
    (rows in bin / rows) * |accuracy - mean confidence|, computed here independently."""
    rng = np.random.default_rng(13)
    classes = ["a", "b", "c"]
    n = 2000
    y = pd.Series(rng.choice(classes, n))
    proba = probabilities(rng, n, 3) ** 3
    proba /= proba.sum(axis=1, keepdims=True)
    proba[:50] = [0.6, 0.3, 0.1]  # a confidence on a bin edge: counts in (0.5, 0.6]
    labels = np.asarray(classes)[proba.argmax(axis=1)]
    s = subject("classification", classes)
    s.holdout = (None, y)
    s.holdout_predictions = (labels, proba)
    s.config = SimpleNamespace(
        tests=SimpleNamespace(model=SimpleNamespace(max_calibration_error=0.1))
    )
    got = model_checks.calibration(s, None).metrics["calibration_error"]
    confidence, correct = proba.max(axis=1), labels == y.to_numpy()
    which = np.ceil(confidence * 10).astype(int)  # bin k holds (k-1)/10 < c <= k/10
    expected = sum(
        (which == k).mean() * abs(correct[which == k].mean() - confidence[which == k].mean())
        for k in np.unique(which)
    )
    assert got == pytest.approx(expected, abs=1e-12)
