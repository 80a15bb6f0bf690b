"""The canary's decision between steps: wait, roll back, hold, go on, or promote.

1. Once the challenger has served ``min_requests``: a server-error rate above
   ``max_error_rate`` or a p99 above ``max_p99_ms`` rolls it back (client errors never
   count: they say nothing about the model).
2. Once both variants have ``min_samples`` labelled predictions: if the challenger is
   less accurate and a two-proportion z-test gives p < ``alpha``, it rolls back.
3. Otherwise it would go on — only if its *offline* gates hold (the gatekeeper asks the
   project's ``[gates]``); if not, it holds at its step and says why (status, metric,
   audit event), and asks again at the next analysis.
4. After the last step it is promoted, if its accuracy is not more than ``TOLERANCE``
   below the champion's (what a manual promotion needs; otherwise it holds and decides
   again on more labels), through the gatekeeper: the registry's champion moves by the
   one promotion function, then the traffic.
"""

from __future__ import annotations

from typing import Any

from shipml.errors import GateFailed
from shipml.rollout.analysis import Analysis
from shipml.rollout.traffic import RUNNING, Traffic

BY = "shipml gateway (canary)"
TOLERANCE = 0.005  # how far below the champion's a promoted challenger's accuracy may be


class Canary:
    def __init__(self, traffic: Traffic, analysis: Analysis) -> None:
        self.traffic = traffic
        self.analysis = analysis

    def numbers(self) -> dict[str, Any]:
        p, t = self.traffic.policy, self.traffic
        report = self.analysis.report(p.champion.name)
        return {
            "step": t.step,
            "weight": p.steps[t.step],
            "champion": report["variants"].get(p.champion.name),
            "challenger": report["variants"].get(p.challengers[0].name),
        }

    def decide(self) -> str:
        """One analysis: ``waiting``, ``held``, ``advanced``, or the new state. No other
        decision (an operator's rollback) lands between reading the state and acting."""
        with self.traffic.deciding:
            return self._decide()

    def _decide(self) -> str:
        t = self.traffic
        if t.state != RUNNING or t.policy.mode != "canary":
            return t.state
        p = t.policy
        numbers = self.numbers()
        champ = self.analysis.stats(p.champion.name)
        chall = self.analysis.stats(p.challengers[0].name)
        failing = self._failing(chall)
        if failing:
            t.rollback(failing, numbers, by=BY)
            return t.state
        if chall.labelled < p.min_samples or champ.labelled < p.min_samples:
            return "waiting"
        acc_c, acc_b = chall.accuracy() or 0.0, champ.accuracy() or 0.0
        row = numbers["challenger"] or {}
        p_value = row.get("p_value_vs_champion", 1.0)
        if acc_c < acc_b and p_value < p.alpha:
            t.rollback(
                f"accuracy {acc_c:.3f} vs champion {acc_b:.3f}, p = {p_value:.2g} < {p.alpha}",
                numbers,
                by=BY,
            )
            return t.state
        online = f"accuracy {acc_c:.3f} vs {acc_b:.3f} (p = {p_value:.2g})"
        refusal = t.gatekeeper.check(p.challengers[0])
        if refusal:  # the reason is the gates' alone: a new event only when it changes
            t.hold(refusal, numbers)
            return "held"
        if t.step + 1 < len(p.steps):
            t.advance(f"step passed: {online}", numbers)
            return "advanced"
        # The rule a manual promotion meets (`rollout promote`), not "not significantly
        # worse": with 200 labels that let a 3-point worse challenger through 4 in 10
        # times. It holds here and decides again on more labels (docs/rollout.md).
        if online_gate(t, self.analysis, TOLERANCE):  # a stable reason: one event
            t.hold(
                f"the challenger's accuracy is more than {TOLERANCE} below the champion's "
                "(the rule of a manual promotion): waiting for more labels",
                numbers,
            )
            return "held"
        try:
            t.promote(f"all steps passed: {online}", numbers, by=BY)
        except GateFailed as exc:
            t.hold(exc.message, numbers)
            return "held"
        return t.state

    def _failing(self, chall: Any) -> str | None:
        """Why the challenger fails on errors or latency, once it served enough."""
        p = self.traffic.policy
        if chall.requests < p.min_requests:
            return None
        if chall.error_rate() > p.max_error_rate:
            return f"error rate {chall.error_rate():.2%} > {p.max_error_rate:.2%}"
        p99 = chall.p99_ms()
        if p99 is not None and p99 > p.max_p99_ms:
            return f"p99 {p99:.1f} ms > {p.max_p99_ms} ms"
        return None


def online_gate(traffic: Traffic, analysis: Analysis, tolerance: float = TOLERANCE) -> str | None:
    """A manual promotion's online gate: a challenger with ``min_samples`` labels must
    not be less accurate than the champion by more than ``tolerance``."""
    p = traffic.policy
    if not p.challengers:
        return "there is no challenger"
    champ = analysis.stats(p.champion.name)
    chall = analysis.stats(p.challengers[0].name)
    if chall.labelled < p.min_samples:
        return (
            f"the challenger has {chall.labelled} labelled predictions; {p.min_samples} are needed"
        )
    acc_c, acc_b = chall.accuracy() or 0.0, champ.accuracy() or 0.0
    if acc_c < acc_b - tolerance:
        return f"challenger accuracy {acc_c:.3f} < champion {acc_b:.3f} - {tolerance}"
    return None
