"""Model checks of behaviour on the held-out rows: invariance to irrelevant changes,
directional expectations, valid answers with missing values, finite outputs on extreme
inputs. Predictions go through the serving path; bounds come from ``[tests.model]``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipml.config import DirectionalSpec, InvarianceSpec
from shipml.errors import TestingError
from shipml.testing.check import CheckResult, Env, NotApplicable
from shipml.testing.quality import primary, quality_metrics
from shipml.testing.subject import Subject


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
        # A NaN change is no evidence either way: the expectation does not hold.
        if fraction < need or wrong_way or not np.isfinite(delta).all():
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
