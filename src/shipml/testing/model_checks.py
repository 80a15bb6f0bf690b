"""Model checks on the held-out rows: quality, baselines, slices, calibration, behaviour
(invariance, directional expectations, missing values, numeric stability), parity,
latency, feature importance and staleness.

Predictions go through the serving path (the server's predictor), so what is tested is
what is served. Bounds come from ``[tests.model]``.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from shipml.config import DirectionalSpec, InvarianceSpec
from shipml.errors import TestingError
from shipml.testing.check import Check, CheckResult, Env, NotApplicable, always, fmt
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


def _better(metric: str, a: float, b: float, margin: float = 0.0) -> bool:
    """a beats b by at least ``margin`` (strictly when margin is 0)."""
    if HIGHER_IS_BETTER.get(metric, True):
        return a > b + margin if margin == 0 else a >= b + margin
    return a < b - margin if margin == 0 else a <= b - margin


def holdout_metrics(subject: Subject) -> dict[str, float]:
    _, y = subject.holdout
    labels, proba = subject.holdout_predictions
    return quality_metrics(subject, y, labels, proba)


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
    ok = _better(metric, got[metric], base[metric], margin)
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
    ok = not _better(metric, theirs[metric], got[metric], tol) or theirs[metric] == got[metric]
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
    for column in columns:
        for key, mask in _slices(subject, column):
            if mask.sum() < cfg.min_slice_rows:
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
        raise NotApplicable(f"no slice has {cfg.min_slice_rows} or more held-out rows")
    worst = max(rows, key=lambda r: r["gap"])
    ok = worst["gap"] <= cfg.max_slice_gap
    return CheckResult(
        ok,
        f"{what}: worst slice {worst['slice']} has {metric} {fmt(worst[metric])} vs "
        f"{fmt(overall)} overall (gap {fmt(worst['gap'])}, max {cfg.max_slice_gap})",
        {"max_slice_gap" if what == "slices" else "max_sensitive_gap": float(worst["gap"])},
        rows,
    )


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


def _perturb(
    subject: Subject, X: pd.DataFrame, spec: InvarianceSpec | DirectionalSpec
) -> pd.DataFrame:
    feature = spec.feature
    types = {f.name: f.type for f in subject.signature.features}
    if feature not in types:
        raise TestingError(
            f"[tests.model] names feature {feature!r}, which is not a model input",
            hint=f"the model's features: {', '.join(types)}",
        )
    out = X.copy()
    shift = getattr(spec, "shift", None)
    if shift is not None:
        if types[feature] == "string":
            raise TestingError(
                f"cannot shift {feature!r}: it is a category",
                hint="use value = ... or shuffle = true for a categorical feature",
            )
        shifted = out[feature].to_numpy(dtype=np.float32) + np.float32(shift)
        out[feature] = shifted.astype(np.float32)
    elif getattr(spec, "value", None) is not None:
        value = spec.value  # type: ignore[union-attr]
        out[feature] = str(value) if types[feature] == "string" else np.float32(value)
    else:  # shuffle
        out[feature] = out[feature].sample(frac=1.0, random_state=0).to_numpy()
    return out


def _same(subject: Subject, a: Any, b: Any, rtol: float) -> np.ndarray:
    if subject.task == "classification":
        return np.asarray(a) == np.asarray(b)
    return np.isclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol, atol=0.0)


def invariance(subject: Subject, env: Env) -> CheckResult:
    """Perturbing what should not matter (each ``[[tests.model.invariance]]``: a feature
    with ``shift``, ``value`` or ``shuffle``) leaves the predictions unchanged."""
    X = subject.holdout_features
    base, _ = subject.holdout_predictions
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for spec in subject.config.tests.model.invariance:
        labels, _ = subject.predict(_perturb(subject, X, spec))
        same = float(_same(subject, labels, base, spec.rtol).mean())
        need = spec.min_agreement
        what = spec.model_dump(exclude_defaults=True)
        rows.append({"perturbation": str(what), "unchanged": round(same, 4), "min": need})
        if same < need:
            failed.append(f"{spec.feature}: {same:.1%} unchanged < {need:.0%}")
    worst = min((float(r["unchanged"]) for r in rows), default=1.0)
    return CheckResult(
        not failed,
        "; ".join(failed)
        or f"{len(rows)} perturbation(s): predictions unchanged (lowest agreement {worst:.1%})",
        {"invariance_agreement": float(worst)},
        rows,
    )


def directional(subject: Subject, env: Env) -> CheckResult:
    """Directional expectations (each ``[[tests.model.directional]]``): changing a feature
    moves the prediction the expected way — the probability of ``label`` for a
    classifier, the value for a regressor — on at least ``min_fraction`` of the rows."""
    X = subject.holdout_features
    base_labels, base_proba = subject.holdout_predictions
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    classes = [str(c) for c in subject.signature.classes]
    for spec in subject.config.tests.model.directional:
        labels, proba = subject.predict(_perturb(subject, X, spec))
        if subject.task == "classification":
            if proba is None or base_proba is None:
                raise NotApplicable("the model gives no probabilities")
            if spec.label is None or str(spec.label) not in classes:
                raise TestingError(
                    f"directional expectation on {spec.feature!r} needs label = one of the "
                    f"model's classes, got {spec.label!r}",
                    hint=f"classes: {', '.join(classes)}",
                )
            i = classes.index(str(spec.label))
            delta = proba[:, i] - base_proba[:, i]
        else:
            delta = np.asarray(labels, float) - np.asarray(base_labels, float)
        up = spec.direction == "increase"
        moved = (delta >= -1e-6) if up else (delta <= 1e-6)
        fraction = float(moved.mean())
        need = spec.min_fraction
        what = spec.model_dump(exclude_defaults=True)
        rows.append(
            {
                "expectation": str(what),
                "as_expected": round(fraction, 4),
                "mean_change": round(float(delta.mean()), 5),
            }
        )
        mean = float(delta.mean())
        wrong_way = mean <= 0 if up else mean >= 0  # no effect at all is not "as expected"
        if fraction < need or wrong_way:
            failed.append(
                f"{spec.feature} {spec.shift:+g} ({spec.direction}): {fraction:.1%} as expected "
                f"(min {need:.0%}), mean change {float(delta.mean()):+.4f}"
            )
    worst = min((float(r["as_expected"]) for r in rows), default=1.0)
    return CheckResult(
        not failed,
        "; ".join(failed) or f"{len(rows)} expectation(s) hold (lowest {worst:.1%} of rows)",
        {"directional_fraction": float(worst)},
        rows,
    )


def _valid_outputs(subject: Subject, labels: Any, proba: Any) -> str | None:
    if subject.task == "classification":
        bad = set(np.asarray(labels).tolist()) - set(subject.signature.classes)
        if bad:
            return f"unknown labels {sorted(map(str, bad))[:3]}"
        if proba is not None:
            if not np.isfinite(proba).all():
                return "non-finite probabilities"
            if np.abs(proba.sum(axis=1) - 1).max() > 1e-3:
                return "probabilities do not sum to 1"
    elif not np.isfinite(np.asarray(labels, float)).all():
        return "non-finite predictions"
    return None


def missing_values(subject: Subject, env: Env) -> CheckResult:
    """Each nullable feature set to missing on every held-out row: the model still answers
    with valid predictions (known labels, finite probabilities summing to 1)."""
    X = subject.holdout_features
    y = subject.package.holdout()[1]
    rows, failed = [], []
    for f in subject.signature.features:
        if not f.nullable:
            continue
        blank = X.copy()
        blank[f.name] = "" if f.type == "string" else np.float32("nan")
        labels, proba = subject.predict(blank)
        problem = _valid_outputs(subject, labels, proba)
        row: dict[str, Any] = {"feature": f.name, "valid": problem is None}
        if y is not None:
            metric = primary(subject)
            row[metric] = round(quality_metrics(subject, y, labels, proba)[metric], 4)
        rows.append(row)
        if problem:
            failed.append(f"{f.name} missing: {problem}")
    if not rows:
        raise NotApplicable("no feature of the model may be missing")
    return CheckResult(
        not failed,
        "; ".join(failed) or f"{len(rows)} nullable feature(s): valid predictions when missing",
        {"missing_value_failures": float(len(failed))},
        rows,
    )


def numeric_stability(subject: Subject, env: Env) -> CheckResult:
    """Extreme numeric inputs (0, ±1e9 in each numeric feature) give finite, valid
    outputs — no NaN or infinity reaches a client."""
    sample = subject.holdout_features.head(20)
    failed, tried = [], 0
    for f in subject.signature.features:
        if f.type == "string":
            continue
        for value in (0.0, 1e9, -1e9):
            extreme = sample.copy()
            extreme[f.name] = np.float32(value)
            labels, proba = subject.predict(extreme)
            tried += 1
            problem = _valid_outputs(subject, labels, proba)
            if problem:
                failed.append(f"{f.name}={value:g}: {problem}")
    if not tried:
        raise NotApplicable("the model has no numeric feature")
    return CheckResult(
        not failed,
        "; ".join(failed[:3]) or f"{tried} extreme inputs: finite, valid outputs",
        {"unstable_inputs": float(len(failed))},
    )


def parity(subject: Subject, env: Env) -> CheckResult:
    """The serving path (validation, batching input, the server's predictor) gives the
    package's own ONNX predictions on the held-out rows. The packaging parity against the
    trained model is enforced when the package is made (a package that failed it does not
    exist); its recorded report is shown, not re-measured."""
    pkg = subject.package
    if pkg.format != "onnx":
        raise NotApplicable("the model is a skops fallback, not ONNX")
    report = pkg.manifest.get("parity") or {}
    agreement = float(report.get("label_agreement", float("nan")))
    diff = float(report.get("max_probability_diff") or 0.0)
    tolerance = float(report.get("tolerance", subject.config.model.parity_tolerance))
    X = subject.holdout_features
    direct_labels, direct_proba = pkg.predict(X)
    served_labels, served_proba = subject.holdout_predictions
    same = bool((np.asarray(direct_labels) == np.asarray(served_labels)).all())
    if direct_proba is not None and served_proba is not None:
        same = same and bool(np.allclose(direct_proba, served_proba, atol=1e-6))
    ok = agreement == 1.0 and diff <= tolerance and same
    return CheckResult(
        ok,
        f"packaging parity: labels {agreement:.1%}, max probability diff {diff:.2g} "
        f"(tolerance {tolerance:g}); serving path {'identical' if same else 'DIFFERS'}",
        {"parity_label_agreement": agreement, "parity_max_diff": diff},
    )


LATENCY_ROUNDS = 7  # rounds of interleaved samples; the best round is judged
LATENCY_SAMPLES = 60  # one-row predictions per round, each path


def latency(subject: Subject, env: Env) -> CheckResult:
    """One-row predictions through the serving path (validation to model output), measured
    against a baseline in the same run: the bare model on the same rows, already converted.
    The two are interleaved over several rounds and the best round's p95 is judged, so a
    busy machine slows both and does not fail a fast model; if even the bare model misses
    the budget, the message says the machine, not the model, is too slow."""
    from shipml.serving.validation import Validator

    X = subject.holdout_features
    records = [
        {str(k): (None if v is None or v != v or v == "" else v) for k, v in r.items()}
        for r in X.head(200).astype(object).to_dict(orient="records")
    ]
    validator = Validator(subject.signature)
    predictor = subject.predictor
    feeds = [predictor.feeds(validator.columns({k: [v] for k, v in r.items()})) for r in records]
    for i in range(10):  # warm up both paths
        served_once(predictor, validator, records[i % len(records)])
        predictor.run(feeds[i % len(feeds)])
    served, bare = [], []
    for _ in range(LATENCY_ROUNDS):
        times: tuple[list[float], list[float]] = ([], [])
        for i in range(LATENCY_SAMPLES):
            k = i % len(records)
            times[0].append(served_once(predictor, validator, records[k]))
            start = time.perf_counter()
            predictor.run(feeds[k])
            times[1].append((time.perf_counter() - start) * 1000)
        served.append(times[0])
        bare.append(times[1])
    return _latency_result(served, bare, subject.config.tests.model.latency_budget_ms)


def served_once(predictor: Any, validator: Any, record: dict[str, Any]) -> float:
    """Milliseconds of one one-row prediction through validation and the model."""
    start = time.perf_counter()
    predictor.run(predictor.feeds(validator.columns({k: [v] for k, v in record.items()})))
    return (time.perf_counter() - start) * 1000


def _latency_result(
    served: list[list[float]], bare: list[list[float]], budget: float
) -> CheckResult:
    p95s = [float(np.percentile(r, 95)) for r in served]
    base95 = [float(np.percentile(r, 95)) for r in bare]
    p95, baseline = min(p95s), min(base95)
    p50 = float(np.median([t for r in served for t in r]))
    ratio = float(np.median([a / b for a, b in zip(p95s, base95, strict=True) if b > 0] or [1.0]))
    metrics = {
        "latency_p95_ms": p95,
        "latency_p50_ms": p50,
        "latency_baseline_p95_ms": baseline,
        "latency_overhead_ratio": ratio,
    }
    text = (
        f"one-row prediction p95 {p95:.3f} ms (best of {len(served)} rounds), p50 {p50:.3f} "
        f"ms, budget {budget} ms; the bare model on the same rows: p95 {baseline:.3f} ms "
        f"({ratio:.2f}x)"
    )
    if p95 > budget and baseline > budget / 2:
        text += (
            "; ENVIRONMENT: the bare model alone is near or over the budget, so this machine "
            "is too slow or too busy to judge the latency (rerun on a quieter machine)"
        )
    return CheckResult(p95 <= budget, text, metrics)


def _loss(subject: Subject, y: pd.Series, labels: Any, proba: Any) -> float:
    """Log loss for a classifier with probabilities, else RMSE (or error rate)."""
    if subject.task == "classification":
        if proba is None:
            return float(np.mean(np.asarray(labels) != y.to_numpy()))
        index = {c: i for i, c in enumerate(subject.signature.classes)}
        cols = np.asarray([index.get(v, -1) for v in y])
        p = np.where(cols >= 0, proba[np.arange(len(y)), np.maximum(cols, 0)], 0.0)
        return float(-np.mean(np.log(np.clip(p, 1e-15, 1.0))))
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
