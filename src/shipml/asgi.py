"""A request to an ASGI app hosted in this process: no socket, no HTTP parsing.

The gateway calls its in-process model servers this way; the demo and the canary
rehearsal of ``shipml test`` call the server and the gateway with it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return orjson.loads(self.body)


async def call(
    app: Any,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    scope: dict[str, Any] | None = None,
) -> Answer:
    """One request to ``app``; ``scope`` adds keys to the ASGI scope (keys no HTTP
    client can set, such as ``shipml.variant``)."""
    sent: list[dict[str, Any]] = []
    request = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("latin-1", "replace"),
        "query_string": b"",
        "headers": list(headers),
        **(scope or {}),
    }
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if done:  # the app reads on after the body: the client is gone
            return {"type": "http.disconnect"}
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(request, receive, send)
    start = sent[0]
    return Answer(
        int(start["status"]),
        b"".join(m.get("body", b"") for m in sent[1:]),
        {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])},
    )


async def post_json(
    app: Any, path: str, payload: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> Answer:
    """POST ``payload`` as JSON."""
    return await call(
        app,
        "POST",
        path,
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        [(b"content-type", b"application/json"), *headers],
    )
