"""A canary rehearsal: the model under test goes through the gateway's canary against
the champion on replayed held-out traffic with its true labels as feedback, the way it
would in production; then a rollback must bring the champion back.

Everything runs in process (the gateway and both model servers as ASGI apps), through
the same code that serves production traffic: weighted routing, online analysis of
errors, latency and accuracy with feedback labels, promotion and rollback.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import Any

import numpy as np

from shipml.asgi import post_json
from shipml.testing.api_checks import _raw_rows
from shipml.testing.check import Check, CheckResult, Env, NotApplicable
from shipml.testing.data_checks import _records
from shipml.testing.subject import Subject

TOKEN = secrets.token_hex(16)  # the rehearsal's feedback token


def _server(subject: Subject) -> Any:
    from shipml.serving.app import ModelServer

    server = ModelServer(subject.predictor)
    server.warm_up()
    return server


def _champion(subject: Subject) -> tuple[Subject, str]:
    """The current champion (another version) to rehearse against, else the model itself."""
    if subject.version is not None:
        current = subject.aliases_of_name().get("champion")
        if current and current != subject.version.version:
            name = f"{subject.version.name}/{current}"  # its package, not its record
            return Subject.load(subject.config, name, full=False), f"champion {name}"
    return subject, "itself (no other champion yet)"


async def _post(app: Any, path: str, body: Any, rid: str) -> tuple[int, dict[str, str], Any]:
    headers = [(b"x-request-id", rid.encode()), (b"authorization", b"Bearer " + TOKEN.encode())]
    answer = await post_json(app, path, body, headers)
    return answer.status, answer.headers, answer.json()


class _Traffic:
    """Replayed held-out rows through the gateway, each answer's true label sent back as
    feedback."""

    def __init__(self, gateway: Any, records: list[dict[str, Any]], labels: list[Any]) -> None:
        self.gateway, self.records, self.labels = gateway, records, labels
        self.ids = itertools.count(1)

    async def send(self, n: int) -> dict[str, int]:
        """``n`` requests, then their feedback; how many each variant answered."""
        counts: dict[str, int] = {}
        feedback = []
        for i in range(n):
            rid = f"rehearsal-{next(self.ids)}"
            body = {"instances": [self.records[i % len(self.records)]]}
            status, headers, _ = await _post(self.gateway, "/predict", body, rid)
            variant = headers.get("x-shipml-variant", "?")
            counts[variant] = counts.get(variant, 0) + 1
            if status == 200:
                feedback.append({"request_id": rid, "label": self.labels[i % len(self.labels)]})
        await _post(self.gateway, "/v1/feedback", feedback, f"rehearsal-fb-{next(self.ids)}")
        return counts


def _step(name: str, counts: dict[str, int], decision: str) -> dict[str, Any]:
    return {
        "step": name,
        "challenger": counts.get("challenger", 0),
        "champion": counts.get("champion", 0),
        "decision": decision,
    }


async def _rehearse(subject: Subject, champion: Subject) -> dict[str, Any]:
    from shipml.rollout import Gateway, Rehearsal, TrafficPolicy, Variant

    # The traffic and its truth: the champion's held-out rows and labels (it passed its
    # gates), as production feedback would come from the world, not from the candidate's
    # own pipeline (whose labels may be what is wrong with it).
    X, y = champion.holdout
    records = _records(_raw_rows(champion, len(X)))
    labels = [v.item() if isinstance(v, np.generic) else v for v in y.tolist()]
    per_step = max(60, 2 * len(records))
    policy = TrafficPolicy(
        mode="canary",
        champion=Variant("champion", app=_server(champion)),
        challengers=[Variant("challenger", app=_server(subject))],
        steps=[50.0, 100.0],
        min_samples=min(40, len(records)),
        min_requests=20,
        interval_s=3600.0,
    )
    # A rehearsal: the online analysis decides and no registry alias moves.
    gateway = Gateway(policy, seed=0, gatekeeper=Rehearsal(), feedback_token=TOKEN)
    traffic = _Traffic(gateway, records, labels)
    steps: list[dict[str, Any]] = []
    for _ in range(6):  # at most a few rounds per step
        if gateway.state != "running":
            break
        weight = policy.steps[gateway.step]
        counts = await traffic.send(per_step)
        steps.append(_step(f"canary {weight:g}%", counts, gateway.decide()))
    promoted = gateway.state == "promoted"
    report = gateway.analysis.report("champion")
    restored = None
    if promoted:
        gateway.rollback("rehearsal: the rollback path must work")
        after = await traffic.send(40)
        restored = after.get("champion", 0) == sum(after.values())
        steps.append(_step("after rollback", after, gateway.state))
    return {
        "promoted": promoted,
        "state": gateway.state,
        "restored": restored,
        "history": gateway.history,
        "report": report,
        "steps": steps,
    }


def canary(subject: Subject, env: Env) -> CheckResult:
    """Canary before serving, online quality monitoring and rollback, rehearsed: the
    gateway sends the model a growing share of the champion's replayed held-out traffic,
    compares accuracy from feedback labels (the champion's), and must promote it (not
    worse than the champion); a rollback must then send every request to the champion
    again."""
    if subject.task != "classification":
        raise NotApplicable("the gateway's online analysis measures accuracy of classifiers")
    champion, against = _champion(subject)
    out = asyncio.run(_rehearse(subject, champion))
    variants = out["report"].get("variants", {})
    acc = {k: v.get("accuracy") for k, v in variants.items()}
    last = (out["history"] or [{}])[-1]
    if not out["promoted"]:
        why = last.get("reason", out["state"])
        return CheckResult(
            False,
            f"the canary against {against} did not promote the model: {why} (accuracy {acc})",
            {"canary_promoted": 0.0},
            out["steps"],
        )
    ok = bool(out["restored"])
    return CheckResult(
        ok,
        f"canary against {against}: promoted after {len(out['steps']) - 1} step(s) "
        f"(accuracy challenger {acc.get('challenger')}, champion {acc.get('champion')}); "
        + (
            "rollback sent every request back to the champion"
            if ok
            else "after rollback the challenger still got traffic"
        ),
        {"canary_promoted": 1.0, "rollback_restored": 1.0 if ok else 0.0},
        out["steps"],
    )


CHECKS = [
    Check(
        "model.canary",
        "canary, online quality and rollback, rehearsed",
        canary,
        lambda c: c.tests.model.canary,
        ("infra-6", "infra-7", "monitor-7"),
    ),
]
