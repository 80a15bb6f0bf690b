"""Model checks on the held-out rows: quality, baselines, slices, calibration, feature
importance, staleness and dependencies, and the list of every model check (``CHECKS``)
with those of behaviour (``behaviour_checks``) and of the serving path (``serving_checks``).

Predictions go through the serving path (the server's predictor), so what is tested is
what is served. Bounds come from ``[tests.model]``.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from shipml.errors import TestingError
from shipml.testing.behaviour_checks import (
    directional,
    invariance,
    missing_values,
    numeric_stability,
)
from shipml.testing.check import Check, CheckResult, Env, NotApplicable, always, fmt
from shipml.testing.quality import better, holdout_metrics, primary, quality_metrics
from shipml.testing.serving_checks import latency, parity
from shipml.testing.subject import Subject


def quality(subject: Subject, env: Env) -> CheckResult:
    """Held-out quality within ``[tests.model] min`` / ``max``."""
    cfg = subject.config.tests.model
    got = holdout_metrics(subject)
    rows, failed = [], []
    for metric, bound in cfg.min.items():
        value = got.get(metric, float("nan"))
        ok = value >= bound
        rows.append({"metric": metric, "value": value, "bound": f">= {bound}", "ok": ok})
        if not ok:
            failed.append(f"{metric} {fmt(value)} < {bound}")
    for metric, bound in cfg.max.items():
        value = got.get(metric, float("nan"))
        ok = value <= bound
        rows.append({"metric": metric, "value": value, "bound": f"<= {bound}", "ok": ok})
        if not ok:
            failed.append(f"{metric} {fmt(value)} > {bound}")
    n = len(subject.holdout[1])
    shown = ", ".join(f"{k}={fmt(v)}" for k, v in got.items())
    if failed:
        return CheckResult(False, f"on {n} held-out rows: {'; '.join(failed)}", got, rows)
    return CheckResult(True, f"on {n} held-out rows: {shown}", got, rows)


def baseline_dummy(subject: Subject, env: Env) -> CheckResult:
    """Better than a dummy baseline (the most frequent class, or the mean) fitted on the
    training labels."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    _, y = subject.holdout
    try:
        y_train = subject.train[1]
    except Exception:
        y_train = y  # no training rows: fit the dummy on the held-out labels (its best case)
    classify = subject.task == "classification"
    dummy = DummyClassifier(strategy="prior") if classify else DummyRegressor()
    dummy.fit(np.zeros((len(y_train), 1)), y_train)
    base_labels = dummy.predict(np.zeros((len(y), 1)))
    base_proba = dummy.predict_proba(np.zeros((len(y), 1))) if classify else None
    base = quality_metrics(subject, y, base_labels, base_proba)
    got = holdout_metrics(subject)
    metric = primary(subject)
    margin = subject.config.tests.model.baseline_margin
    ok = better(metric, got[metric], base[metric], margin)
    return CheckResult(
        ok,
        f"{metric} {fmt(got[metric])} vs dummy {fmt(base[metric])} (margin {margin})",
        {**got, f"dummy_{metric}": base[metric]},
    )


def _simple_model(subject: Subject) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    sig = subject.signature
    strings = [f.name for f in sig.features if f.type == "string"]
    numbers = [f.name for f in sig.features if f.type != "string"]
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), strings),
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        ]
    )
    final = LogisticRegression(max_iter=1000) if subject.task == "classification" else Ridge()
    return make_pipeline(prep, final)


def baseline_simpler(subject: Subject, env: Env) -> CheckResult:
    """A simpler model (logistic or ridge regression) trained on the same rows is not
    better than the model by more than ``simpler_tolerance``."""
    X_train, y_train = subject.train
    X, y = subject.holdout
    simple = _simple_model(subject).fit(X_train, y_train)
    proba = simple.predict_proba(X) if subject.task == "classification" else None
    theirs = quality_metrics(subject, y, simple.predict(X), proba)
    got = holdout_metrics(subject)
    metric = primary(subject)
    tol = subject.config.tests.model.simpler_tolerance
    mine, simpler = got[metric], theirs[metric]
    finite = bool(np.isfinite([simpler, mine]).all())  # a NaN beats nothing, loses nothing
    ok = finite and (not better(metric, simpler, mine, tol) or simpler == mine)
    name = type(simple.steps[-1][1]).__name__
    return CheckResult(
        ok,
        f"{metric} {fmt(got[metric])} vs simpler {name} {fmt(theirs[metric])} (tolerance {tol})",
        {f"simpler_{metric}": theirs[metric]},
    )


def _slices(subject: Subject, column: str) -> list[tuple[str, np.ndarray]]:
    X = subject.holdout_features
    if column not in X.columns:
        raise TestingError(
            f"[tests.model] slices or sensitive names {column!r}, which is not a feature of "
            "the model",
            hint=f"the model's features: {', '.join(X.columns)}",
        )
    col = X[column]
    feature = next(f for f in subject.signature.features if f.name == column)
    if feature.type == "string":
        keys = col.replace("", "(missing)")
        return [(str(k), (keys == k).to_numpy()) for k in sorted(keys.unique())]
    bins = pd.qcut(col, subject.config.tests.model.slice_bins, duplicates="drop")
    out = [(str(k), (bins == k).to_numpy()) for k in bins.cat.categories]
    if col.isna().any():
        out.append(("(missing)", col.isna().to_numpy()))
    return out


def _slice_check(subject: Subject, columns: list[str], what: str) -> CheckResult:
    cfg = subject.config.tests.model
    _, y = subject.holdout
    labels, _ = subject.holdout_predictions
    classify = subject.task == "classification"
    metric = "accuracy" if classify else "mae"
    correct = (labels == y.to_numpy()) if classify else np.abs(labels - y.to_numpy(float))
    overall = float(correct.mean())
    rows: list[dict[str, Any]] = []
    small: list[str] = []  # slices too small to judge: named, never silently dropped
    for column in columns:
        for key, mask in _slices(subject, column):
            if mask.sum() < cfg.min_slice_rows:
                small.append(f"{column}={key} ({int(mask.sum())})")
                continue
            value = float(correct[mask].mean())
            # accuracy points for a classifier; the relative rise of MAE for a regressor
            gap = overall - value if classify else (value - overall) / max(overall, 1e-12)
            rows.append(
                {
                    "slice": f"{column}={key}",
                    "rows": int(mask.sum()),
                    metric: round(value, 4),
                    "gap": round(gap, 4),
                }
            )
    if not rows:
        raise NotApplicable(
            f"no slice has {cfg.min_slice_rows} or more held-out rows: {', '.join(small[:10])}"
        )
    worst = worst_slice(rows)
    ok = worst["gap"] <= cfg.max_slice_gap
    named = ", ".join(small[:10]) + (f" and {len(small) - 10} more" if len(small) > 10 else "")
    unjudged = f"; too few rows (< {cfg.min_slice_rows}) to judge: {named}" if small else ""
    return CheckResult(
        ok,
        f"{what}: worst slice {worst['slice']} has {metric} {fmt(worst[metric])} vs "
        f"{fmt(overall)} overall (gap {fmt(worst['gap'])}, max {cfg.max_slice_gap}){unjudged}",
        {"max_slice_gap" if what == "slices" else "max_sensitive_gap": float(worst["gap"])},
        rows,
    )


def worst_slice(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The slice with the largest gap; a NaN gap loses every comparison, so it counts as
    the worst (it fails the bound) instead of being passed over."""
    return max(rows, key=lambda r: r["gap"] if math.isfinite(r["gap"]) else math.inf)


def slices(subject: Subject, env: Env) -> CheckResult:
    """Quality on each data slice is within ``max_slice_gap`` of the overall quality."""
    return _slice_check(subject, subject.config.tests.model.slices, "slices")


def fairness(subject: Subject, env: Env) -> CheckResult:
    """Inclusion: quality on each group of a sensitive column (``sensitive``) is within
    ``max_slice_gap`` of the overall quality."""
    return _slice_check(subject, subject.config.tests.model.sensitive, "sensitive groups")


def calibration(subject: Subject, env: Env) -> CheckResult:
    """Expected calibration error (10 bins of the top probability) within the bound."""
    if subject.task != "classification":
        raise NotApplicable("calibration applies to classifiers")
    _, y = subject.holdout
    labels, proba = subject.holdout_predictions
    if proba is None:
        raise NotApplicable("the model gives no probabilities")
    if not np.isfinite(proba).all():
        bad = int((~np.isfinite(proba)).any(axis=1).sum())
        return CheckResult(
            False,
            f"{bad} of {len(proba)} held-out rows have non-finite probabilities",
            {"calibration_error": float("nan")},
        )
    confidence = proba.max(axis=1)
    correct = labels == y.to_numpy()
    edges = np.linspace(0.0, 1.0, 11)
    ece, rows = 0.0, []
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            gap = abs(float(correct[mask].mean()) - float(confidence[mask].mean()))
            ece += mask.mean() * gap
            rows.append(
                {
                    "bin": f"{lo:.1f}-{hi:.1f}",
                    "rows": int(mask.sum()),
                    "accuracy": round(float(correct[mask].mean()), 4),
                    "confidence": round(float(confidence[mask].mean()), 4),
                }
            )
    limit = subject.config.tests.model.max_calibration_error
    return CheckResult(
        ece <= limit,
        f"expected calibration error {fmt(ece)} (max {limit})",
        {"calibration_error": float(ece)},
        rows,
    )


def _loss(subject: Subject, y: pd.Series, labels: Any, proba: Any) -> float:
    """Log loss for a classifier with probabilities, else RMSE (or error rate)."""
    if subject.task == "classification":
        if proba is None:
            return float(np.mean(np.asarray(labels) != y.to_numpy()))
        index = {c: i for i, c in enumerate(subject.signature.classes)}
        cols = np.asarray([index.get(v, -1) for v in y])
        p = np.where(cols >= 0, proba[np.arange(len(y)), np.maximum(cols, 0)], 0.0)
        # clipped at the float's epsilon, as scikit-learn's log_loss (1e-15 gave a
        # certain wrong answer a loss of 34.5 against its 36.0)
        return float(-np.mean(np.log(np.clip(p, np.finfo(np.float64).eps, 1.0))))
    return float(np.sqrt(np.mean((np.asarray(labels, float) - y.to_numpy(float)) ** 2)))


def feature_importance(subject: Subject, env: Env) -> CheckResult:
    """Every feature earns its place: shuffling it raises the held-out loss (log loss for
    a classifier, RMSE for a regressor) by at least ``min_feature_importance``
    (permutation importance, mean of 5 shuffles)."""
    X, y = subject.holdout
    base = _loss(subject, y, *subject.holdout_predictions)
    rng = np.random.default_rng(0)
    rows = []
    for f in subject.signature.features:
        rises = []
        for _ in range(5):
            shuffled = X.copy()
            shuffled[f.name] = shuffled[f.name].to_numpy()[rng.permutation(len(X))]
            rises.append(_loss(subject, y, *subject.predict(shuffled)) - base)
        rows.append({"feature": f.name, "importance": round(float(np.mean(rises)), 5)})
    limit = subject.config.tests.model.min_feature_importance or 0.0
    weakest = min(rows, key=lambda r: float(r["importance"]))
    return CheckResult(
        float(weakest["importance"]) >= limit,
        f"weakest feature {weakest['feature']!r}: loss rises {fmt(float(weakest['importance']))}"
        f" when it is shuffled (min {limit})",
        {"min_feature_importance": float(weakest["importance"])},
        sorted(rows, key=lambda r: -float(r["importance"])),
    )


def staleness(subject: Subject, env: Env) -> CheckResult:
    """The model is not older than ``max_age_days`` (from its package's creation)."""
    created = subject.package.manifest.get("created")
    if not created:
        raise NotApplicable("the package records no creation time")
    age = (datetime.now(UTC) - datetime.fromisoformat(created)).total_seconds() / 86400
    limit = subject.config.tests.model.max_age_days
    return CheckResult(
        age <= limit, f"model age {age:.1f} days (max {limit})", {"age_days": float(age)}
    )


def dependencies(subject: Subject, env: Env) -> CheckResult:
    """The packages the model was trained and packaged with (its lineage) against the ones
    installed now: a change of a key package is reported (and fails the check), so it is
    noticed before it reaches a model in production."""
    from shipml.tracking import package_versions

    trained = dict(subject.package.lineage.get("packages") or {})
    if not trained:
        raise NotApplicable("the package's lineage records no package versions")
    now = package_versions(tuple(trained))
    changed = [
        {"package": k, "trained": v, "now": now.get(k, "not installed")}
        for k, v in sorted(trained.items())
        if now.get(k) != v and k != "shipml"
    ]
    listed = ", ".join(f"{c['package']} {c['trained']} -> {c['now']}" for c in changed)
    return CheckResult(
        not changed,
        f"{len(changed)} key package(s) changed since training"
        + (f": {listed}" if listed else "")
        + f" ({len(trained)} compared)",
        {"changed_dependencies": float(len(changed))},
        changed,
    )


CHECKS = [
    Check(
        "model.quality",
        "quality thresholds on held-out rows",
        quality,
        lambda c: bool(c.tests.model.min or c.tests.model.max),
        ("infra-4",),
    ),
    Check("model.baseline", "better than a dummy baseline", baseline_dummy, always, ("infra-4",)),
    Check(
        "model.simpler",
        "a simpler model is not better",
        baseline_simpler,
        lambda c: c.tests.model.simpler,
        ("model-5",),
    ),
    Check(
        "model.slices",
        "quality on each data slice",
        slices,
        lambda c: bool(c.tests.model.slices),
        ("model-6",),
    ),
    Check(
        "model.inclusion",
        "quality on each sensitive group",
        fairness,
        lambda c: bool(c.tests.model.sensitive),
        ("model-7",),
    ),
    Check("model.calibration", "probabilities are calibrated", calibration, always, ()),
    Check(
        "model.invariance",
        "irrelevant changes leave predictions alone",
        invariance,
        lambda c: bool(c.tests.model.invariance),
        (),
    ),
    Check(
        "model.directional",
        "directional expectations hold",
        directional,
        lambda c: bool(c.tests.model.directional),
        (),
    ),
    Check(
        "model.missing_values",
        "valid answers when values are missing",
        missing_values,
        lambda c: c.tests.model.missing_values,
        (),
    ),
    Check(
        "model.numeric_stability",
        "finite outputs on extreme inputs",
        numeric_stability,
        always,
        ("monitor-5",),
    ),
    Check("model.parity", "the serving path gives the package's predictions", parity, always),
    Check("model.latency", "one-row latency within budget", latency, always, ("monitor-6",)),
    Check(
        "model.feature_importance",
        "every feature is beneficial",
        feature_importance,
        lambda c: c.tests.model.min_feature_importance is not None,
        ("data-2",),
    ),
    Check("model.staleness", "the model is not stale", staleness, always, ("monitor-4",)),
    Check(
        "model.dependencies",
        "dependencies unchanged since training",
        dependencies,
        always,
        ("monitor-1",),
    ),
]
