"""Model checks of the serving path: it gives the package's predictions (parity) and
answers one row within the latency budget (interleaved rounds, the best judged)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from shipml.testing.check import CheckResult, Env, NotApplicable
from shipml.testing.subject import Subject


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
