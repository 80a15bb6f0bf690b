"""Streaming quality counts: a large batch counted in one vectorised pass gives exactly
what counting it row by row gives, odd labels included (missing, empty, not a number)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shipml.data.quality import Quality


def _rows(n: int, seed: int) -> tuple[list, list, list, list]:
    rng = np.random.default_rng(seed)
    classes = ["Adelie", "Gentoo", "Chinstrap", 1, True]
    truth = [classes[i] for i in rng.integers(0, len(classes), n)]
    predicted = [classes[i] for i in rng.integers(0, len(classes), n)]
    for i in rng.choice(n, n // 10, replace=False):
        truth[i] = [None, "", math.nan][i % 3]  # unlabelled rows
    values = rng.normal(10, 3, n).tolist()
    guesses = (np.asarray(values) + rng.normal(0, 1, n)).tolist()
    for i in rng.choice(n, n // 10, replace=False):
        values[i] = [None, "", math.nan, "abc", math.inf][i % 5]
    return truth, predicted, values, guesses


def _one_by_one(task: str, truth: list, predicted: list) -> Quality:
    q = Quality(task)
    for t, p in zip(truth, predicted, strict=True):
        q.add([t], [p])
    return q


def test_a_large_batch_counts_exactly_as_row_by_row():
    truth, predicted, values, guesses = _rows(2000, seed=3)
    many = Quality("classification")
    many.add(truth, predicted)
    single = _one_by_one("classification", truth, predicted)
    assert many.n == single.n == 1800 and many.cells == single.cells
    assert many.metrics() == single.metrics()
    many = Quality("regression")
    many.add(values, guesses)
    single = _one_by_one("regression", values, guesses)
    assert many.n == single.n == 1800  # missing, "abc" and inf are all skipped
    assert math.isclose(many.abs_error, single.abs_error, rel_tol=1e-9)
    assert math.isclose(many.quartic_error, single.quartic_error, rel_tol=1e-9)
    assert math.isclose(many.metrics()["rmse"], single.metrics()["rmse"], rel_tol=1e-9)


def test_lengths_that_differ_count_the_common_rows():
    q = Quality("classification")
    q.add(["a"] * 300, ["a"] * 280)
    assert q.n == 280 and q.metrics()["accuracy"] == 1.0


def test_made_up_labels_take_bounded_memory_and_leave_accuracy_as_it_was():
    from shipml.data.quality import OTHER, Quality

    truth = [f"label-{i}" for i in range(30_000)] + ["a"] * 100  # labels a client made up
    predicted = ["a"] * len(truth)
    for rows in (100, 5000):  # the row loop and the vectorised pass
        quality = Quality("classification")
        for start in range(0, len(truth), rows):
            quality.add(truth[start : start + rows], predicted[start : start + rows])
        assert len(quality.cells) <= Quality.MAX_CELLS + 2  # + (OTHER, a) and (a, a)
        assert quality.cells[(OTHER, "a")] > 0 and quality.cells[("a", "a")] == 100
        assert quality.metrics()["accuracy"] == pytest.approx(100 / len(truth))
        merged = Quality("classification")
        merged.merge(quality)
        merged.merge(quality)
        assert len(merged.cells) <= Quality.MAX_CELLS + 2
        assert merged.metrics()["accuracy"] == pytest.approx(100 / len(truth))


def test_metrics_are_sklearns_on_the_labelled_rows():
    from sklearn import metrics

    truth, predicted, values, guesses = _rows(3000, 21)
    labelled = [
        (str(t), str(p))
        for t, p in zip(truth, predicted, strict=True)
        if t is not None and t != "" and not (isinstance(t, float) and math.isnan(t))
    ]
    q = Quality("classification")
    q.add(truth, predicted)
    t, p = zip(*labelled, strict=True)
    assert q.n == len(t)
    assert q.metrics()["accuracy"] == pytest.approx(metrics.accuracy_score(t, p), abs=1e-15)
    assert q.metrics()["f1_macro"] == pytest.approx(
        metrics.f1_score(t, p, average="macro", zero_division=0), abs=1e-12
    )
    r = Quality("regression")
    r.add(guesses, values)  # truth: the guesses; predicted: values with odd ones
    pairs = []
    for g, v in zip(guesses, values, strict=True):
        try:
            if math.isfinite(float(v) - g):
                pairs.append((g, float(v)))
        except (TypeError, ValueError):
            continue
    y, yhat = np.array(pairs).T
    assert r.n == len(y)
    assert r.metrics()["mae"] == pytest.approx(metrics.mean_absolute_error(y, yhat), rel=1e-12)
    assert r.metrics()["rmse"] == pytest.approx(
        math.sqrt(metrics.mean_squared_error(y, yhat)), rel=1e-12
    )


def test_chance_is_the_p_value_of_so_large_a_loss_by_sampling_alone():
    """Accuracy: the exact binomial at the hold-out's rate; F1: resamples of the window;
    MAE/RMSE: the normal approximation. Each is calibrated: for a model exactly as good
    as its hold-out, p < 0.05 in about 5% of windows (at most, being discrete), and a
    real loss gives a small p."""
    from scipy.stats import binom

    q = Quality("classification")
    q.add(["a"] * 30, ["a"] * 24 + ["b"] * 6)  # 80% on 30 labels
    assert math.isclose(q.chance("accuracy", 0.9), binom.cdf(24, 30, 0.9))
    assert q.chance("accuracy", 0.8) > 0.5  # as good as its hold-out: no evidence
    rng = np.random.default_rng(5)
    classes = np.array(["a", "b", "c"])

    def window(n: int, accuracy: float) -> Quality:
        truth = classes[rng.integers(0, 3, n)]
        wrong = classes[(np.searchsorted(classes, truth) + rng.integers(1, 3, n)) % 3]
        q = Quality("classification")
        q.add(list(truth), list(np.where(rng.random(n) < accuracy, truth, wrong)))
        return q

    big = window(20_000, 0.9).metrics()  # the hold-out's F1 for a 90% model
    same = [window(100, 0.9) for _ in range(300)]
    for metric, holdout in (("accuracy", 0.9), ("f1_macro", big["f1_macro"])):
        false = np.mean([q.chance(metric, holdout) < 0.05 for q in same])
        assert false <= 0.08, (metric, false)
        worse = np.mean([window(100, 0.75).chance(metric, holdout) < 0.05 for _ in range(100)])
        assert worse >= 0.9, (metric, worse)
    errors = [rng.normal(0, 1, 100) for _ in range(300)]
    for metric, holdout in (("mae", math.sqrt(2 / math.pi)), ("rmse", 1.0)):
        false = np.mean([_errors(e).chance(metric, holdout) < 0.05 for e in errors])
        assert 0.01 <= false <= 0.1, (metric, false)
        worse = np.mean([_errors(1.5 * e).chance(metric, holdout) < 0.05 for e in errors])
        assert worse >= 0.9, (metric, worse)
    assert Quality("regression").chance("mae", 1.0) == 1.0  # no labels: no evidence
    huge = Quality("regression")  # errors whose fourth power overflows: no OverflowError
    huge.add([0.0] * 50, [1e80] * 50)  # row by row
    huge.add([0.0] * 300, [1e200] * 300)  # vectorised
    assert huge.n == 350 and huge.chance("rmse", 1.0) == huge.chance("mae", 1.0) == 0.0


def _errors(errors: np.ndarray) -> Quality:
    q = Quality("regression")
    q.add(list(errors), [0.0] * len(errors))
    return q
