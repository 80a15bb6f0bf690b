"""The gateway in front of real model servers (`shipml serve` processes)."""

import asyncio
import random
from collections import Counter

import httpx
import numpy as np
import pytest

from shipml.audit import AuditLog
from shipml.rollout import Gateway, Rehearsal, TrafficPolicy, Variant
from tests.rollout.conftest import instances
from tests.serving.conftest import start_server

TOKEN = "label-t0ken"  # the feedback token of these gateways
# Latency is not what these tests decide on: on a loaded CI machine (pytest-xdist
# workers, servers and clients on two cores) a slow answer must not decide instead.
LOADED = 30.0
LABELLER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def servers(penguins_package, worse_package):
    procs = {}
    urls = {}
    for name, pkg in (
        ("good", penguins_package),
        ("twin", penguins_package),
        ("worse", worse_package),
    ):
        procs[name], urls[name] = start_server(pkg.path)
    yield urls, procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def rows(penguins_data):
    return instances(penguins_data)


async def drive(gateway, requests, concurrency=16, feedback=False):
    """Send (instance, label, key) through the gateway in process; returns answers."""
    await gateway.start()
    transport = httpx.ASGITransport(app=gateway)
    answers = []
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            sem = asyncio.Semaphore(concurrency)

            async def one(i, inst, label, key):
                async with sem:
                    headers = {"X-Request-ID": f"r{i}"}
                    if key is not None:
                        headers["X-User"] = key
                    resp = await client.post(
                        "/predict", json={"instances": [inst]}, headers=headers
                    )
                    answers.append((key, resp.status_code, resp.headers.get("x-shipml-variant")))
                    if feedback and resp.status_code == 200:
                        await client.post(
                            "/v1/feedback",
                            json={"request_id": f"r{i}", "label": label},
                            headers=LABELLER,
                        )

            await asyncio.gather(*(one(i, *r) for i, r in enumerate(requests)))
    finally:
        await gateway.stop()
    return answers


def test_ab_80_20_split_is_sticky_by_key(servers, penguins_data):
    urls, _ = servers
    policy = TrafficPolicy(
        "ab",
        Variant("good", urls["good"]),
        [Variant("twin", urls["twin"])],
        weights={"good": 80, "twin": 20},
        sticky="header:x-user",
        timeout_s=LOADED,
    )
    data = rows(penguins_data)
    rng = random.Random(7)
    keys = [f"user-{rng.randrange(10**9)}" for _ in range(2500)]
    requests = [(*data[i % len(data)], keys[i % len(keys)]) for i in range(10_000)]
    answers = asyncio.run(drive(Gateway(policy, seed=1), requests, concurrency=32))
    assert len(answers) == 10_000 and {s for _, s, _ in answers} == {200}
    share = Counter(v for _, _, v in answers)["twin"] / len(answers)
    assert abs(share - 0.20) <= 0.02
    by_key: dict[str, set[str]] = {}
    for key, _, variant in answers:
        by_key.setdefault(key, set()).add(variant)
    assert all(len(v) == 1 for v in by_key.values())  # the same key, the same variant


def test_shadow_failures_never_touch_the_primary(servers, penguins_data, penguins_package):
    urls, _ = servers
    shadow_proc, shadow_url = start_server(penguins_package.path)
    policy = TrafficPolicy(
        "shadow",
        Variant("good", urls["good"]),
        [Variant("shadow", shadow_url)],
        shadow_fraction=1.0,
        timeout_s=5.0,  # a loaded machine: the live shadow must answer before it dies
    )
    gateway = Gateway(policy, seed=1)
    data = rows(penguins_data)

    def compared() -> int:
        return int(gateway.status()["analysis"]["shadow"].get("shadow", {}).get("compared", 0))

    async def scenario():
        first = await drive_keep(gateway, data[:150])
        for _ in range(100):  # mirrored requests run in the background: let some finish
            if compared() >= 10:
                break
            await asyncio.sleep(0.1)
        shadow_proc.kill()  # the shadow dies mid-run
        shadow_proc.wait(timeout=10)
        second = await drive_keep(gateway, data[150:340])
        await asyncio.sleep(1.5)  # let mirrored requests finish or fail
        await gateway.stop()
        return first + second

    async def drive_keep(gw, part):
        transport = httpx.ASGITransport(app=gw)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return [await client.post("/predict", json={"instances": [inst]}) for inst, _ in part]

    async def run():
        await gateway.start()
        return await scenario()

    answers = asyncio.run(run())
    assert len(answers) == 340 and all(r.status_code == 200 for r in answers)
    assert all(r.headers["x-shipml-variant"] == "good" for r in answers)
    report = gateway.status()
    assert report["shadow"]["shadow_failed"] > 0  # the dead shadow shows in the metrics
    assert report["shadow"]["skipped_circuit_open"] > 0  # and is then left alone
    assert report["analysis"]["shadow"]["shadow"]["agreement"] == 1.0  # the same model agrees
    assert 'shipml_gateway_shadow_total{outcome="shadow_failed"}' in gateway.metrics()


@pytest.mark.parametrize(
    ("challenger", "outcome"), [("worse", "rolled back"), ("twin", "promoted")]
)
def test_canary_decides_by_itself_and_audits_why(
    servers, penguins_data, tmp_path, challenger, outcome
):
    urls, _ = servers
    audit = AuditLog(
        tmp_path / "audit.db", signing_key=tmp_path / "k.pem", checkpoint_dir=tmp_path / "cp"
    )
    policy = TrafficPolicy(
        "canary",
        Variant("champion", urls["good"]),
        [Variant("challenger", urls[challenger])],
        steps=[50.0, 100.0],
        min_samples=40,
        interval_s=3600,
        timeout_s=LOADED,
        max_p99_ms=LOADED * 1000,
    )
    # The challenger's offline gates hold (Rehearsal: no registry here; tests/project runs
    # the canary against real gates): the online analysis decides.
    gateway = Gateway(policy, audit=audit, seed=2, gatekeeper=Rehearsal(), feedback_token=TOKEN)
    data = rows(penguins_data)
    rng = np.random.default_rng(0)
    decisions = []

    async def run():
        for _round in range(6):
            if gateway.state != "running":
                break
            picks = [data[i] for i in rng.integers(0, len(data), 160)]
            await drive_again(gateway, picks)
            decisions.append(gateway.decide())
        await gateway.stop()

    async def drive_again(gw, part):
        if not gw.started:
            await gw.start()
        transport = httpx.ASGITransport(app=gw)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            for inst, label in part:
                rid = f"q{rng.integers(10**12)}"
                resp = await client.post(
                    "/predict", json={"instances": [inst]}, headers={"X-Request-ID": rid}
                )
                assert resp.status_code == 200
                await client.post(
                    "/v1/feedback", json={"request_id": rid, "label": label}, headers=LABELLER
                )

    asyncio.run(run())
    assert gateway.state == outcome, decisions
    events = [r for r in AuditLog(tmp_path / "audit.db").find_events()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start"
    final = events[-1]
    assert final["event"] == ("rollback" if outcome == "rolled back" else "promotion")
    numbers = final["numbers"]
    assert numbers["challenger"]["labelled"] >= 40 and numbers["champion"]["accuracy"] > 0.9
    if outcome == "rolled back":
        assert numbers["challenger"]["accuracy"] < 0.7
        assert numbers["challenger"]["p_value_vs_champion"] < 0.05
    else:
        assert "traffic" in kinds  # it went through the steps before promoting
        assert gateway.policy.champion.name == "challenger"


def test_manual_promotion_passes_the_quality_gate_or_is_overridden(servers, penguins_data):
    urls, _ = servers
    policy = TrafficPolicy(
        "ab",
        Variant("champion", urls["good"]),
        [Variant("challenger", urls["worse"])],
        min_samples=20,
        timeout_s=LOADED,
    )
    gateway = Gateway(
        policy, admin_token="s3cret", seed=4, gatekeeper=Rehearsal(), feedback_token=TOKEN
    )
    data = rows(penguins_data)

    async def run():
        await gateway.start()
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            for i, (inst, label) in enumerate(data[:200]):
                await client.post(
                    "/predict", json={"instances": [inst]}, headers={"X-Request-ID": f"m{i}"}
                )
                await client.post(
                    "/v1/feedback", json={"request_id": f"m{i}", "label": label}, headers=LABELLER
                )
            no_token = await client.post("/v1/rollout/promote")
            refused = await client.post(
                "/v1/rollout/promote", headers={"Authorization": "Bearer s3cret"}
            )
            forced = await client.post(
                "/v1/rollout/promote",
                headers={"Authorization": "Bearer s3cret", "X-Shipml-Force": "ana: hotfix"},
            )
        await gateway.stop()
        return no_token, refused, forced

    no_token, refused, forced = asyncio.run(run())
    assert no_token.status_code == 401
    assert refused.status_code == 409 and "challenger accuracy" in refused.json()["error"]
    assert forced.status_code == 200 and gateway.policy.champion.name == "challenger"
    events = [e["event"] for e in gateway.history]
    assert events[-2:] == ["manual override", "promotion"]


def test_kill_9_of_the_gateway_loses_no_answered_request(tmp_path, penguins_package, penguins_data):
    import json
    import os
    import subprocess
    import sys

    from shipml.audit import verify
    from tests.conftest import hammer_then_kill, wait_until_ready
    from tests.serving.conftest import free_port

    (tmp_path / "shipml.toml").write_text('[project]\nname = "gw"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shipml",
            "gateway",
            "--port",
            str(port),
            "--champion",
            f"penguins={penguins_package.path}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_ready(port)
    bodies = [json.dumps({"instances": [inst]}).encode() for inst, _ in rows(penguins_data)[:50]]
    answered = hammer_then_kill(port, bodies, proc)
    assert len(answered) > 100
    log = AuditLog(tmp_path / ".shipml" / "audit" / "audit.db")
    recorded = {row[0] for row in log.conn.execute("SELECT request_id FROM entries")}
    assert [rid for rid in answered if rid not in recorded] == []
    assert verify(log).ok
    assert log.find_events()[0]["event"] == "start"


def test_client_errors_never_count_but_a_challenger_that_is_down_is_rolled_back(
    servers, penguins_data
):
    """Until issue 12 a challenger answering 4xx was rolled back: a flood of bad requests
    from any client could do that. Now 4xx are the client's: a challenger that answers
    nothing but 4xx gets no labels and waits; one that is down (502) is rolled back."""
    from tests.serving.conftest import free_port

    urls, _ = servers
    data = rows(penguins_data)

    async def run(challenger_url):
        policy = TrafficPolicy(
            "canary",
            Variant("champion", urls["good"]),
            [Variant("challenger", challenger_url)],
            steps=[50.0],
            interval_s=3600,
            timeout_s=1.0,
        )
        gateway = Gateway(policy, seed=5, gatekeeper=Rehearsal())
        await gateway.start()
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            for inst, _ in data[:200]:
                await client.post("/predict", json={"instances": [inst]})
        decision = gateway.decide()
        await gateway.stop()
        return gateway, decision

    answers_404, waited = asyncio.run(run(urls["good"] + "/nope"))
    assert waited == "waiting" and answers_404.state == "running"
    stats = answers_404.status()["analysis"]["variants"]["challenger"]
    assert stats["client_errors"] > 50 and stats["requests"] == 0 and stats["error_rate"] == 0
    down, decision = asyncio.run(run(f"http://127.0.0.1:{free_port()}"))
    assert decision == "rolled back"
    assert "error rate" in down.history[-1]["reason"]

    async def single_rollback():
        single = Gateway(TrafficPolicy("single", Variant("only", urls["good"])), admin_token="t")
        await single.start()
        t2 = httpx.ASGITransport(app=single)
        async with httpx.AsyncClient(transport=t2, base_url="http://gw") as c2:
            answer = await c2.post("/v1/rollout/rollback", headers={"Authorization": "Bearer t"})
        await single.stop()
        return answer

    no_challenger = asyncio.run(single_rollback())
    assert no_challenger.status_code == 409 and "only a champion" in no_challenger.json()["error"]
