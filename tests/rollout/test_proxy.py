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
from tests.rollout.conftest import instances
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
