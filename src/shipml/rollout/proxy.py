"""Forwarding a request to a variant: a model server in this process (plain ASGI, no
socket) or a remote ``shipml serve`` over HTTP, with the variant attested.

An in-process server learns its variant from the ASGI scope key ``shipml.variant``; a
remote one from ``X-Shipml-Variant`` with an HMAC proof made with the shared key (see
``shipml.attestation``). A server, remote or in process, that does not answer in time
is a 504, one that cannot be reached a 502: both count against the variant.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from shipml import asgi
from shipml.attestation import HEADER, PROOF_HEADER, SCOPE_KEY, proof
from shipml.rollout.policy import Variant
from shipml.rollout.routing import JSON

TIMEOUT = 504
UNREACHABLE = 502


class Upstream:
    """The gateway's connections to its variants."""

    def __init__(self, timeout_s: float, attestation_key: bytes = b"") -> None:
        self.timeout_s = timeout_s
        self.attestation_key = attestation_key
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, variant: Variant, path: str, body: bytes, rid: bytes, trace: bytes | None
    ) -> tuple[int, bytes]:
        """POST ``body`` to ``variant``; (status, answer)."""
        headers = [(b"content-type", JSON), (b"x-request-id", rid)]
        if trace:
            headers.append((b"traceparent", trace))
        if variant.app is not None:
            scope = {
                "type": "http",
                "asgi": asgi.ASGI,
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": path,
                "query_string": b"",
                "headers": headers,
                SCOPE_KEY: variant.name,
            }
            try:  # a hung model must not hold a shadow worker or a client for good
                async with asyncio.timeout(self.timeout_s):
                    answer = await asgi.exchange(variant.app, scope, body)
            except TimeoutError:
                where = f"in-process model server {variant.name}"
                return TIMEOUT, _error(f"{where} did not answer in {self.timeout_s:g} s")
            return answer.status, answer.body
        if self.attestation_key:
            headers.append((HEADER, variant.name_bytes))
            headers.append((PROOF_HEADER, proof(self.attestation_key, rid, variant.name_bytes)))
        return await self._post(variant.url + path, body, headers)

    async def hand_over(
        self, variant: Variant, scope: dict[str, Any], receive: Any, send: Any
    ) -> int:
        """The request, unread, to an in-process ``variant`` (the single mode's fast path:
        the server reads the body and answers the client itself); its status. ``scope``
        is the gateway's own copy: the variant's key is set in it."""
        status = 500
        served = (b"x-shipml-variant", variant.name_bytes)

        async def answer(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":  # the app's own message: add to it
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), served]
            await send(message)

        scope[SCOPE_KEY] = variant.name
        await variant.app(scope, receive, answer)
        return status

    async def _post(
        self, url: str, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, bytes]:
        if self._session is None:
            await self.start()
        assert self._session is not None
        text = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        try:
            async with self._session.post(url, data=body, headers=text) as resp:
                return resp.status, await resp.read()
        except TimeoutError:
            return TIMEOUT, _error(f"model server {url} did not answer in {self.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return UNREACHABLE, _error(
                f"model server {url} did not answer: {type(exc).__name__}: {str(exc)[:200]}"
            )


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def outputs_of(path: str, body: Any) -> dict[str, Any]:
    """The first row's label and probabilities from a model server's answer."""
    try:
        if path.startswith("/v2/"):
            outs = {o["name"]: o for o in body["outputs"]}
            label = outs["label"]["data"][0] if "label" in outs else None
            proba = outs.get("probabilities")
            n = proba["shape"][-1] if proba else 0
            return {"label": label, "probabilities": proba["data"][:n] if proba else None}
        first = body["predictions"][0]
        if isinstance(first, dict):
            probs = first.get("probabilities")
            return {
                "label": first.get("label"),
                "probabilities": (list(probs.values()) if isinstance(probs, dict) else probs),
            }
        probs = body.get("probabilities")
        return {"label": first, "probabilities": probs[0] if probs else None}
    except (KeyError, IndexError, TypeError, AttributeError):
        return {"label": None, "probabilities": None}
