"""The gateway's paths to `champion` go through the one promotion function too: its
canary holds an untested challenger at its step (and says why: status, metric, audit
event), a manual promotion is refused without an override, a forced one is recorded,
and once the challenger is tested the canary promotes it in the registry; a rollback
then restores the previous champion there."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import orjson
import pytest

from shipml.asgi import call, post_json
from shipml.audit import open_log
from shipml.config import load_config
from shipml.model import ModelPackage
from shipml.project.rollout import GatewayOptions, plan_gateway
from shipml.testing.runner import run_tests
from shipml.tracking import registry_for, resolve_model
from tests.project.conftest import ADMIN_TOKEN, FEEDBACK_TOKEN

# The package's project (conftest.two_versions) is made once and its registry changes in
# order: these tests run on one pytest-xdist worker (`--dist loadgroup`).
pytestmark = pytest.mark.xdist_group("project-two-versions")


LABELLER = [(b"authorization", f"Bearer {FEEDBACK_TOKEN}".encode())]
ADMIN = [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode())]
_ids = itertools.count()


def labelled_rows(config):
    package = ModelPackage.load(resolve_model(config, "penguins@champion").path)
    X, y = package.holdout()
    rows = [
        {k: (None if v != v else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
        for r in X.to_dict("records")
    ]
    return list(zip(rows, y.tolist(), strict=True))


async def traffic(gateway, rows, n):
    """``n`` predictions through the gateway, each labelled by the labeller."""
    labels = []
    for i in range(n):
        row, label = rows[i % len(rows)]
        rid = f"t{next(_ids)}"
        answer = await post_json(
            gateway, "/predict", {"instances": [row]}, [(b"x-request-id", rid.encode())]
        )
        assert answer.status == 200, answer.body
        labels.append({"request_id": rid, "label": label})
    counted = await post_json(gateway, "/v1/feedback", labels, LABELLER)
    assert counted.json()["matched"] == n


def canary(config, mode="canary"):
    options = GatewayOptions(
        mode=mode,
        champion="champion=penguins@champion",
        challengers=["challenger=penguins@challenger"],
        steps="50,100",
        min_samples=30,
    )
    gateway = plan_gateway(config, options).gateway
    gateway.policy.max_p99_ms = 60_000  # latency is not under test (a loaded CI machine)
    return gateway


def events(config):
    log = open_log(config, writer=False)
    try:
        return log.find_events()
    finally:
        log.close()


def test_the_canary_holds_an_untested_challenger_and_says_why(two_versions):
    config = load_config(two_versions)
    gateway = canary(config)
    rows = labelled_rows(config)

    async def scenario():
        await gateway.start()
        try:
            await traffic(gateway, rows, 120)
            first = await asyncio.to_thread(gateway.decide)
            await traffic(gateway, rows, 60)
            second = await asyncio.to_thread(gateway.decide)
            return first, second
        finally:
            await gateway.stop()

    first, second = asyncio.run(scenario())
    assert (first, second) == ("held", "held")
    assert gateway.step == 0 and gateway.state == "running"
    status = gateway.status()
    assert "never tested" in status["held"] and "penguins/2" in status["held"]
    assert "shipml_gateway_canary_held 1.0" in gateway.metrics()
    holds = [e for e in events(config) if e["event"] == "hold"]
    assert len(holds) == 1 and "never tested" in holds[0]["reason"]  # once, not per tick
    assert registry_for(config).aliases("penguins")["champion"] == "1"


def test_manual_promotion_needs_the_gates_or_a_recorded_override_and_rollback_restores(
    two_versions,
):
    config = load_config(two_versions)
    gateway = canary(config, mode="ab")
    rows = labelled_rows(config)

    async def scenario():
        await gateway.start()
        try:
            await traffic(gateway, rows, 80)
            refused = await post_json(gateway, "/v1/rollout/promote", None, ADMIN)
            forced = await post_json(
                gateway,
                "/v1/rollout/promote",
                None,
                [*ADMIN, (b"x-shipml-force", b"ana: incident%2042")],
            )
            after_force = registry_for(config).aliases("penguins")["champion"]
            back = await post_json(gateway, "/v1/rollout/rollback", None, ADMIN)
            return refused, forced, after_force, back
        finally:
            await gateway.stop()

    refused, forced, after_force, back = asyncio.run(scenario())
    assert refused.status == 409 and "never tested" in refused.json()["error"]
    assert forced.status == 200 and after_force == "2"
    info = registry_for(config).resolve("penguins/2")
    assert info.tags["shipml.promotion.forced"] == "true"
    assert "ana: incident 42" in info.tags["shipml.promotion.reason"]
    assert back.status == 200 and registry_for(config).aliases("penguins")["champion"] == "1"
    kinds = [e["event"] for e in events(config)]
    assert kinds[-5:] == ["manual override", "promotion", "promotion", "rollback", "rollback"]


def test_once_the_challenger_is_tested_the_canary_promotes_it_in_the_registry(two_versions):
    config = load_config(two_versions)
    tested = run_tests(config, "penguins/2", suites=["data"])
    assert tested.passed, tested.results["summary"]
    gateway = canary(config)
    rows = labelled_rows(config)
    rng = np.random.default_rng(0)

    async def scenario():
        await gateway.start()
        decisions = []
        try:
            for _ in range(6):
                if gateway.state != "running":
                    break
                order = rng.permutation(len(rows))
                await traffic(gateway, [rows[i] for i in order], 120)
                decisions.append(await asyncio.to_thread(gateway.decide))
        finally:
            await gateway.stop()
        return decisions

    decisions = asyncio.run(scenario())
    assert decisions[-1] == "promoted", decisions
    assert registry_for(config).aliases("penguins")["champion"] == "2"
    moved = [e for e in events(config) if e["event"] == "promotion" and "model" in e][-1]
    assert moved["by"] == "shipml gateway (canary)" and moved["forced"] is False
    assert moved["version"] == "2" and moved["previous_version"] == "1"


@pytest.mark.parametrize(("bound", "refused"), [("127.0.0.1", True), ("0.0.0.0", False)])
def test_a_gateway_on_loopback_answers_only_requests_that_name_it(two_versions, bound, refused):
    """DNS rebinding: a web page whose name resolves to 127.0.0.1 sends that name in Host.
    A gateway bound to loopback refuses it on every route; one on every interface (in a
    container, reached by a service name) answers it."""
    config = load_config(two_versions)
    options = GatewayOptions(mode="single", champion="champion=penguins@champion", host=bound)
    gateway = plan_gateway(config, options).gateway

    async def ask(host: bytes | None):
        headers = [(b"host", host)] if host is not None else []
        ready = await call(gateway, "GET", "/v2/health/ready", headers=headers)
        body = orjson.dumps({"instances": [labelled_rows(config)[0][0]]})
        headers.append((b"content-type", b"application/json"))
        predicted = await call(gateway, "POST", "/predict", body, headers=headers)
        return ready, predicted

    async def run():
        await gateway.start()
        try:
            return [await ask(h) for h in (None, b"127.0.0.1:8000", b"rebind.evil.example")]
        finally:
            await gateway.stop()

    plain, local, foreign = asyncio.run(run())
    assert plain[1].status == 200, plain[1].body
    assert [a.status for a in local] == [a.status for a in plain]
    if refused:
        assert [a.status for a in foreign] == [403, 403]
        assert "DNS rebinding" in foreign[1].json()["error"]
    else:
        assert [a.status for a in foreign] == [a.status for a in plain]
