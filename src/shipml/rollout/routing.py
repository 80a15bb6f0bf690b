"""How the gateway reads a request: strict routes, bounded bodies, valid request ids,
sticky keys, bearer tokens — and how it answers with a JSON error.

Each helper takes plain ASGI pieces (the scope's headers, ``receive``, ``send``) and
raises ``Refused`` (a 4xx with a message that quotes at most a short prefix of a bad
value), so any ASGI app, and the fuzz tests, can use them as they are.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from shipml.errors import ServingError

JSON = b"application/json"
MAX_REQUEST_ID = 128
MAX_STICKY_KEY = 256
INFER = "infer"
# path -> {method: route}; V2 inference paths are matched by shape (see ``route``)
ROUTES: dict[str, dict[str, str]] = {
    "/predict": {"POST": INFER},
    "/invocations": {"POST": INFER},
    "/v1/feedback": {"POST": "feedback"},
    "/v1/rollout/promote": {"POST": "promote"},
    "/v1/rollout/rollback": {"POST": "rollback"},
    "/v1/rollout": {"GET": "status"},
    "/metrics": {"GET": "metrics"},
    "/v2/health/live": {"GET": "live"},
    "/v2/health/ready": {"GET": "ready"},
}
_V2_INFER = {"POST": INFER}


class Refused(ServingError):
    """A request the gateway answers with ``status`` (a 4xx) and a JSON error."""

    kind = "refused"

    def __init__(self, status: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status

    def body(self) -> bytes:
        text = f"{self.message} ({self.hint})" if self.hint else self.message
        return orjson.dumps({"error": text})


def preview(value: bytes | str, limit: int = 40) -> str:
    """``value`` for an error message: at most ``limit`` characters, and its length."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def v2_infer_path(path: str) -> bool:
    """``/v2/models/NAME/infer`` or ``/v2/models/NAME/versions/V/infer``, nothing else."""
    parts = path[len("/v2/models/") :].split("/")
    if len(parts) == 2:
        return bool(parts[0]) and parts[1] == "infer"
    return (
        len(parts) == 4
        and bool(parts[0])
        and parts[1] == "versions"
        and bool(parts[2])
        and (parts[3] == "infer")
    )


@functools.lru_cache(maxsize=512)  # only routes found are cached: bounded, never hostile
def route(method: str, path: str) -> str:
    """The route of ``method path``: 404 for an unknown path, 405 for a wrong method."""
    table = ROUTES.get(path)
    if table is None and path.startswith("/v2/models/") and v2_infer_path(path):
        table = _V2_INFER
    if table is None:
        raise Refused(404, f"no such endpoint: {method[:10]} {preview(path, 80)}")
    found = table.get(method)
    if found is None:
        raise Refused(405, f"method {method[:10]} is not allowed on {path}; use {', '.join(table)}")
    return found


async def read_body(headers: dict[bytes, bytes], receive: Any, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it when
    Content-Length says so; while reading it otherwise)."""
    declared = content_length(headers)
    if declared is not None and declared > limit:
        raise Refused(
            413,
            f"body of {declared:,} bytes is larger than the limit of {limit:,} bytes",
            hint="send fewer rows per request, or raise [rollout] max_body_bytes",
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "the client closed the connection before the body was sent")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(
                413,
                f"body is larger than the limit of {limit:,} bytes",
                hint="send fewer rows per request, or raise [rollout] max_body_bytes",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request's headers by name. ``X-Request-ID`` may be given once: a model server
    takes the first of several, this gateway would take the last (a 400)."""
    headers = dict(raw)
    if len(headers) < len(raw) and sum(name == b"x-request-id" for name, _ in raw) > 1:
        raise Refused(400, "X-Request-ID is given more than once; send one")
    return headers


def content_length(headers: dict[bytes, bytes]) -> int | None:
    """The declared ``Content-Length``, or None; a 400 unless it is a number of bytes."""
    declared = headers.get(b"content-length")
    if declared is None:
        return None
    if not declared.isdigit() or len(declared) > 19:
        raise Refused(400, f"Content-Length must be a number of bytes, got {preview(declared)}")
    return int(declared)


def request_id(headers: dict[bytes, bytes]) -> bytes | None:
    """The client's ``X-Request-ID`` if it gave one: 1 to 128 visible ASCII characters."""
    given = headers.get(b"x-request-id")
    if given is None:
        return None
    if not 0 < len(given) <= MAX_REQUEST_ID or not all(33 <= c <= 126 for c in given):
        raise Refused(
            400,
            f"X-Request-ID must be 1 to {MAX_REQUEST_ID} visible ASCII characters, got "
            f"{preview(given)}",
        )
    return given


def bearer(headers: dict[bytes, bytes]) -> bytes | None:
    """The token of ``Authorization: Bearer TOKEN`` (the scheme in any case), else None."""
    value = headers.get(b"authorization")
    if value is None or len(value) < 8 or value[:7].lower() != b"bearer ":
        return None
    token = value[7:].strip()
    return token or None


def sticky_key(sticky: str | None, headers: dict[bytes, bytes], body: bytes) -> str | None:
    """The key that keeps a client on one variant (``header:NAME`` or ``field:NAME`` of
    the first row), or None: random assignment. A strange body never raises."""
    if not sticky:
        return None
    kind, _, name = sticky.partition(":")
    if kind == "header":
        value = headers.get(name.lower().encode("latin-1"))
        return value[:MAX_STICKY_KEY].decode("latin-1") if value is not None else None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return _field_key(data, name)


def _field_key(data: Any, name: str) -> str | None:
    if not isinstance(data, dict):
        return None
    for key in ("instances", "dataframe_records"):
        rows = data.get(key)
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            return _scalar(rows[0].get(name))
    tensors = data.get("inputs")
    if isinstance(tensors, list):
        for tensor in tensors:
            if isinstance(tensor, dict) and tensor.get("name") == name:
                values = tensor.get("data")
                if isinstance(values, list) and values:
                    return _scalar(values[0])
    return None


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool | int | float | str):
        return str(value)[:MAX_STICKY_KEY]
    return None


async def send_bytes(
    send: Any,
    status: int,
    body: bytes,
    rid: bytes,
    ctype: bytes = JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """One whole response."""
    headers = [
        (b"content-type", ctype),
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", rid),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Any, status: int, obj: Any, rid: bytes) -> None:
    await send_bytes(send, status, orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), rid)
