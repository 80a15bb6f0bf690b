"""Online analysis of a rollout: per-variant errors and latency, champion/challenger
agreement on mirrored traffic, and, once labels arrive, each variant's accuracy with a
confidence interval and a significance test against the champion."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LATENCY_WINDOW = 5_000
MAX_PENDING_LABELS = 200_000


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_p(c1: int, n1: int, c2: int, n2: int) -> float:
    """Two-sided p-value of the z-test that two proportions are equal."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (c1 + c2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if c1 / n1 == c2 / n2 else 0.0
    z = (c1 / n1 - c2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))


@dataclass
class VariantStats:
    requests: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    labelled: int = 0
    correct: int = 0

    def p99_ms(self) -> float | None:
        if not self.latencies:
            return None
        return float(np.percentile(np.fromiter(self.latencies, float), 99)) * 1000

    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclass
class ShadowStats:
    compared: int = 0
    agreed: int = 0
    diffs: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


class Analysis:
    def __init__(self) -> None:
        self.variants: dict[str, VariantStats] = {}
        self.shadow: dict[str, ShadowStats] = {}
        # request id -> {variant: predicted label}, bounded (oldest forgotten first)
        self.predictions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.unmatched_feedback = 0

    def stats(self, variant: str) -> VariantStats:
        found = self.variants.get(variant)
        if found is None:
            found = self.variants[variant] = VariantStats()
        return found

    def record(
        self, variant: str, seconds: float, ok: bool, request_id: str | None, label: Any = None
    ) -> None:
        s = self.stats(variant)
        s.requests += 1
        s.latencies.append(seconds)
        if not ok:
            s.errors += 1
        elif request_id is not None and label is not None:
            self._remember(request_id, variant, label)

    def _remember(self, request_id: str, variant: str, label: Any) -> None:
        entry = self.predictions.get(request_id)
        if entry is None:
            entry = self.predictions[request_id] = {}
            if len(self.predictions) > MAX_PENDING_LABELS:
                self.predictions.popitem(last=False)
        entry[variant] = label

    def compare(
        self,
        shadow: str,
        primary_out: dict[str, Any],
        shadow_out: dict[str, Any],
        request_id: str | None,
    ) -> None:
        s = self.shadow.setdefault(shadow, ShadowStats())
        s.compared += 1
        if primary_out.get("label") == shadow_out.get("label"):
            s.agreed += 1
        p1, p2 = primary_out.get("probabilities"), shadow_out.get("probabilities")
        if p1 is not None and p2 is not None and len(p1) == len(p2):
            s.diffs.append(float(np.max(np.abs(np.asarray(p1) - np.asarray(p2)))))
        if request_id is not None and shadow_out.get("label") is not None:
            self._remember(request_id, shadow, shadow_out["label"])

    def feedback(self, request_id: str, label: Any) -> bool:
        entry = self.predictions.pop(request_id, None)
        if entry is None:
            self.unmatched_feedback += 1
            return False
        for variant, predicted in entry.items():
            s = self.stats(variant)
            s.labelled += 1
            s.correct += int(_same(predicted, label))
        return True

    def report(self, champion: str) -> dict[str, Any]:
        base = self.stats(champion)
        out: dict[str, Any] = {"champion": champion, "variants": {}, "shadow": {}}
        for name, s in self.variants.items():
            low, high = wilson(s.correct, s.labelled)
            row: dict[str, Any] = {
                "requests": s.requests,
                "error_rate": s.error_rate(),
                "p99_ms": s.p99_ms(),
                "labelled": s.labelled,
                "accuracy": s.accuracy(),
                "accuracy_ci95": [low, high] if s.labelled else None,
            }
            if name != champion and s.labelled and base.labelled:
                row["p_value_vs_champion"] = two_proportion_p(
                    s.correct, s.labelled, base.correct, base.labelled
                )
            out["variants"][name] = row
        for name, sh in self.shadow.items():
            diffs = np.fromiter(sh.diffs, float) if sh.diffs else np.zeros(0)
            out["shadow"][name] = {
                "compared": sh.compared,
                "agreement": sh.agreed / sh.compared if sh.compared else None,
                "max_probability_diff": {
                    q: float(np.percentile(diffs, p)) if len(diffs) else None
                    for q, p in (("p50", 50), ("p90", 90), ("p99", 99))
                },
            }
        out["unmatched_feedback"] = self.unmatched_feedback
        return out


def _same(predicted: Any, label: Any) -> bool:
    if isinstance(predicted, list) and len(predicted) == 1:
        predicted = predicted[0]
    return str(predicted) == str(label)
