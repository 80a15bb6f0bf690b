"""Online analysis of a rollout: per-variant errors and latency, champion/challenger
agreement on mirrored traffic, and, once labels arrive, each variant's accuracy with a
confidence interval and a significance test against the champion.

What counts against a variant: its server errors and timeouts (5xx) and its labelled
quality. A client error (4xx: a request the client got wrong) is counted apart and
never does: a flood of bad requests moves no decision. A label counts once, only for a
request id this gateway answered, within the feedback window.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipml.rollout.answered import Answered

LATENCY_WINDOW = 5_000
MAX_PENDING_LABELS = 200_000
MAX_LABEL_CHARS = 256  # of a label sent as feedback; a prediction is kept to one more
OK, ERROR, CLIENT_ERROR = "ok", "error", "client error"
# What a label sent as feedback did: counted, or why not.
MATCHED, UNKNOWN, ALREADY_LABELLED, EXPIRED = "matched", "unknown", "already labelled", "expired"
# An answer awaiting a label: (when, variant, its first row's label as text, variant,
# label, ...), flat, of floats and strings only: the garbage collector stops walking such
# a tuple (a dict per answer made each full collection walk 200,000 more objects: 61
# against 12 ms, a stall of every answer in flight).
Awaiting = tuple[Any, ...]


def outcome_of(status: int) -> str:
    """ok (2xx, 3xx), client error (4xx) or error (5xx and the gateway's 502/504)."""
    if status < 400:
        return OK
    return CLIENT_ERROR if status < 500 else ERROR


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
    requests: int = 0  # answered or failed by the variant (client errors apart)
    errors: int = 0
    client_errors: int = 0
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
    def __init__(self, window_s: float = 86_400.0, *, made_prefix: str = "") -> None:
        """``made_prefix``: the prefix of the request ids the gateway makes itself
        (``PREFIX-N``); their answers are remembered by number (``answered``)."""
        self.window_s = window_s
        self.variants: dict[str, VariantStats] = {}
        self.shadow: dict[str, ShadowStats] = {}
        # request id -> the answer awaiting its label (``Awaiting``), oldest first
        self.predictions: OrderedDict[str, Awaiting] = OrderedDict()
        # request ids labelled already (a second label for one is refused), bounded
        self.labelled: OrderedDict[str, None] = OrderedDict()
        # answers to the requests whose id the gateway made (single mode, no label yet)
        self.answered = Answered(made_prefix or "-", MAX_PENDING_LABELS)
        self.unmatched_feedback = 0

    def stats(self, variant: str) -> VariantStats:
        found = self.variants.get(variant)
        if found is None:
            found = self.variants[variant] = VariantStats()
        return found

    def record(
        self,
        variant: str,
        seconds: float,
        outcome: str,
        request_id: str | None = None,
        label: Any = None,
        *,
        made: int | None = None,
    ) -> None:
        """``made``: the number of a request id the gateway made (``PREFIX-N``) instead
        of ``request_id``, for an answer whose label is not known."""
        s = self.stats(variant)
        if outcome == CLIENT_ERROR:
            s.client_errors += 1
            return
        s.requests += 1
        s.latencies.append(seconds)
        if outcome != OK:
            s.errors += 1
        elif made is not None:  # answered: a label may come for it
            self.answered.add(made, time.monotonic())
        elif request_id is not None:
            self._remember(request_id, variant, label)

    def seen(self, request_id: str) -> bool:
        """Whether a label could refer to ``request_id`` already (a client that reuses
        an id gets a new one: a label must name one answer)."""
        return (
            request_id in self.predictions
            or request_id in self.labelled
            or self.answered.holds(request_id)
        )

    def _remember(self, request_id: str, variant: str, label: Any) -> None:
        pending = self.predictions
        if label is not None:
            label = _first_row(label)
        found = pending.get(request_id)
        if found is None:
            if request_id in self.labelled:  # labelled before this (mirrored) answer came
                return
            now = time.monotonic()
            while pending and (
                len(pending) >= MAX_PENDING_LABELS
                or now - next(iter(pending.values()))[0] > self.window_s
            ):
                pending.popitem(last=False)  # the oldest: past the window, or too many
            pending[request_id] = (now,) if label is None else (now, variant, label)
            return
        if label is not None:  # a label counts for the variants whose answer is known
            others = [x for pair in _pairs(found) if pair[0] != variant for x in pair]
            pending[request_id] = (found[0], *others, variant, label)

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
        diff = _max_diff(primary_out.get("probabilities"), shadow_out.get("probabilities"))
        if diff is not None:
            s.diffs.append(diff)
        if request_id is not None and shadow_out.get("label") is not None:
            self._remember(request_id, shadow, shadow_out["label"])

    def feedback(self, request_id: str, label: Any) -> str:
        """Count ``label`` for the answers to ``request_id``; what it did (``MATCHED``) or
        why it did not count."""
        if request_id in self.labelled:  # one label per id, whichever answer it names
            self.unmatched_feedback += 1
            return ALREADY_LABELLED
        found = self.predictions.pop(request_id, None)
        if found is None:
            return self._made_feedback(request_id)
        self._labelled(request_id)
        answered = found[0]
        if time.monotonic() - answered > self.window_s:
            self.unmatched_feedback += 1
            return EXPIRED
        for variant, predicted in _pairs(found):
            s = self.stats(variant)
            s.labelled += 1
            s.correct += int(_same(predicted, label))
        return MATCHED

    def _made_feedback(self, request_id: str) -> str:
        """A label for an answer remembered by number (nothing to count: single mode)."""
        taken = self.answered.label(request_id)
        if taken is None or taken[0] == "labelled":
            self.unmatched_feedback += 1
            return UNKNOWN if taken is None else ALREADY_LABELLED
        self._labelled(request_id)  # a client may have sent this id too: one label for it
        if time.monotonic() - taken[1] > self.window_s:
            self.unmatched_feedback += 1
            return EXPIRED
        return MATCHED

    def _labelled(self, request_id: str) -> None:
        self.labelled[request_id] = None
        if len(self.labelled) > MAX_PENDING_LABELS:
            self.labelled.popitem(last=False)

    def report(self, champion: str) -> dict[str, Any]:
        base = self.stats(champion)
        out: dict[str, Any] = {"champion": champion, "variants": {}, "shadow": {}}
        for name, s in self.variants.items():
            low, high = wilson(s.correct, s.labelled)
            row: dict[str, Any] = {
                "requests": s.requests,
                "client_errors": s.client_errors,
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


def _pairs(awaiting: Awaiting) -> list[tuple[str, str]]:
    """(variant, predicted label) of an answer awaiting its label."""
    return list(zip(awaiting[1::2], awaiting[2::2], strict=True))


def _max_diff(p1: Any, p2: Any) -> float | None:
    """The largest difference between two answers' probabilities; None when either is
    not a list of as many finite numbers (a model server's garbage is no number)."""
    if not isinstance(p1, list) or not isinstance(p2, list) or not p1 or len(p1) != len(p2):
        return None
    try:
        diff = float(np.max(np.abs(np.asarray(p1, float) - np.asarray(p2, float))))
    except (ValueError, TypeError):
        return None
    return diff if math.isfinite(diff) else None


def _first_row(label: Any) -> str:
    """The first row's label, as the text it is compared by: at most one character
    more than a label sent as feedback can have (a model server's garbage label of a
    megabyte is kept for 200,000 answers otherwise, and can match no label anyway)."""
    if isinstance(label, list) and label:
        label = label[0]
    return str(label)[: MAX_LABEL_CHARS + 1]


def _same(predicted: str, label: Any) -> bool:
    """The first row's prediction against the first row's label."""
    return predicted == _first_row(label)
