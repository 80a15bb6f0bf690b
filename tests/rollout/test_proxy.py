"""Forwarding over a real socket: a remote server records the variant the gateway
attested and "direct" for what a client claims; a server that does not answer in time
is a 504, one that cannot be reached a 502."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import urllib.request

import orjson

from shipml.asgi import post_json
from shipml.attestation import load_key
from shipml.audit import AuditLog
from shipml.rollout import Gateway, TrafficPolicy, Variant
from shipml.rollout.proxy import Upstream
from tests.conftest import wait_until_ready
from tests.rollout.conftest import instances, server
from tests.serving.conftest import free_port


def test_a_remote_server_records_the_attested_variant_and_nothing_a_client_claims(
    tmp_path, penguins_package, penguins_data
):
    (tmp_path / "shipml.toml").write_text('[project]\nname = "attested"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipml", "serve", str(penguins_package.path), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    (row, _), *_ = instances(penguins_data, 1)
    try:
        wait_until_ready(port)
        key = load_key(tmp_path / ".shipml" / "rollout" / "attestation.key", create=False)
        assert len(key) == 32  # made by the server, shared through the project
        gateway = Gateway(
            TrafficPolicy("single", Variant("remote-v2", url=url)), attestation_key=key
        )

        async def through_gateway():
            await gateway.start()
            try:
                rid = [(b"x-request-id", b"via-gateway")]
                return await post_json(gateway, "/predict", {"instances": [row]}, rid)
            finally:
                await gateway.stop()

        assert asyncio.run(through_gateway()).status == 200
        forged = urllib.request.Request(
            url + "/predict",
            data=orjson.dumps({"instances": [row]}),
            headers={
                "Content-Type": "application/json",
                "X-Request-ID": "direct-claim",
                "X-Shipml-Variant": "remote-v2",
                "X-Shipml-Variant-Proof": "t=1;" + "0" * 64,
            },
        )
        with urllib.request.urlopen(forged, timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log = AuditLog(tmp_path / ".shipml" / "audit" / "audit.db")
    assert log.find("via-gateway")[0]["variant"] == "remote-v2"
    assert log.find("direct-claim")[0]["variant"] == "direct"


def test_a_silent_server_is_a_504_and_a_closed_port_a_502():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    silent = f"http://127.0.0.1:{listener.getsockname()[1]}"
    upstream = Upstream(timeout_s=0.3)

    async def scenario():
        await upstream.start()
        try:
            slow = await upstream.send(Variant("s", url=silent), "/predict", b"{}", b"r", None)
            gone = await upstream.send(
                Variant("g", url=f"http://127.0.0.1:{free_port()}"), "/predict", b"{}", b"r", None
            )
        finally:
            await upstream.stop()
        return slow, gone

    try:
        (slow, slow_body), (gone, gone_body) = asyncio.run(scenario())
    finally:
        listener.close()
    assert slow == 504 and b"did not answer in 0.3 s" in slow_body
    assert gone == 502 and b"did not answer" in gone_body


class Hung:
    """An in-process model server stuck in its model: it reads the request, never
    answers (a fault a real server cannot be made to have on demand)."""

    ready = True

    def warm_up(self) -> None:
        pass

    async def __call__(self, scope, receive, send) -> None:
        await receive()
        await asyncio.Event().wait()


def test_an_in_process_variant_that_hangs_is_a_504_and_its_shadow_circuit_opens(
    penguins_package, penguins_data
):
    (row, _), *_ = instances(penguins_data, 1)
    ab = TrafficPolicy(
        "ab",
        Variant("champion", app=server(penguins_package)),
        [Variant("hung", app=Hung())],
        weights={"champion": 0, "hung": 100},
        timeout_s=0.2,
    )
    shadow = TrafficPolicy(
        "shadow", Variant("champion", app=server(penguins_package)), [Variant("hung", app=Hung())]
    )
    shadow.timeout_s = 0.2

    async def scenario(gateway, n):
        await gateway.start()
        answers = [await post_json(gateway, "/predict", {"instances": [row]}) for _ in range(n)]
        await asyncio.sleep(1.0)  # the mirrored requests time out in the background
        answers += [await post_json(gateway, "/predict", {"instances": [row]}) for _ in range(n)]
        await asyncio.sleep(0.1)
        await gateway.stop()
        return answers

    hung = asyncio.run(asyncio.wait_for(scenario(Gateway(ab), 1), 30))  # not for ever
    assert [a.status for a in hung] == [504, 504] and b"did not answer in 0.2 s" in hung[0].body
    mirroring = Gateway(shadow)
    answers = asyncio.run(asyncio.wait_for(scenario(mirroring, 8), 30))
    assert {a.status for a in answers} == {200}  # the client never waits for the shadow
    assert mirroring.counters["shadow_failed"] >= 5  # no worker is held for good
    assert mirroring.counters["skipped_circuit_open"] >= 1


def test_the_shadow_queue_holds_a_bounded_number_of_bytes(penguins_package, penguins_data):
    """1,000 queued bodies of 10 MiB would be 10 GiB held for a slow shadow."""
    (row, _), *_ = instances(penguins_data, 1)
    body = {"instances": [row] * 50}
    size = len(orjson.dumps(body))
    policy = TrafficPolicy(
        "shadow", Variant("champion", app=server(penguins_package)), [Variant("slow", app=Hung())]
    )
    policy.timeout_s = 60.0
    gateway = Gateway(policy)

    async def scenario():
        await gateway.start()
        gateway.shadow.max_queued_bytes = 3 * size
        answers = [await post_json(gateway, "/predict", body) for _ in range(10)]
        held = gateway.shadow.queued_bytes
        await gateway.stop()
        return answers, held

    answers, held = asyncio.run(scenario())
    assert {a.status for a in answers} == {200}
    assert gateway.counters["mirrored"] == 3 and gateway.counters["dropped"] == 7
    assert held == 3 * size and gateway.shadow.queued_bytes == 0
