"""A request to an ASGI app hosted in this process: no socket, no HTTP parsing.

The gateway calls its in-process model servers this way; the demo and the canary
rehearsal of ``shipml test`` call the server and the gateway with it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

ASGI = {"version": "3.0"}
Headers = list[tuple[bytes, bytes]]


class Answer:
    """What the app answered: status, body and its raw headers."""

    __slots__ = ("body", "raw_headers", "status")

    def __init__(self, status: int, body: bytes, raw_headers: Headers) -> None:
        self.status, self.body, self.raw_headers = status, body, raw_headers

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.raw_headers}

    def json(self) -> Any:
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body[:200]!r})"


def scope_of(method: str, path: str, headers: Headers, **extra: Any) -> dict[str, Any]:
    """An HTTP scope; ``extra`` adds keys no HTTP client can set (``shipml.variant``)."""
    scope = {
        "type": "http",
        "asgi": ASGI,
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "headers": headers,
    }
    scope.update(extra)
    return scope


async def exchange(app: Any, scope: dict[str, Any], body: bytes) -> Answer:
    """Send ``body`` to ``app`` under ``scope``; the whole answer."""
    sent: list[dict[str, Any]] = []
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if done:  # the app reads on after the body: the client is gone
            return {"type": "http.disconnect"}
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    await app(scope, receive, _sender(sent))
    start = sent[0]
    if len(sent) == 2:
        payload = sent[1].get("body", b"")
    else:
        payload = b"".join(m.get("body", b"") for m in sent[1:])
    return Answer(int(start["status"]), payload, start.get("headers", []))


def _sender(sent: list[dict[str, Any]]) -> Any:
    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return send


async def call(
    app: Any,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> Answer:
    """One request to ``app``."""
    return await exchange(app, scope_of(method, path, list(headers)), body)


async def post_json(
    app: Any, path: str, payload: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> Answer:
    """POST ``payload`` as JSON."""
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return await call(app, "POST", path, body, [(b"content-type", b"application/json"), *headers])
