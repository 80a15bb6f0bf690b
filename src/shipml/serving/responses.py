"""How the model server answers: JSON bodies, error bodies of bounded size, and the two
ASGI messages of a whole response (head and body, sent together by ``OneWrite``)."""

from __future__ import annotations

from typing import Any

import orjson

from shipml.errors import ServingError
from shipml.serving import binary
from shipml.serving.validation import shorten

JSON = b"application/json"
JSON_TYPE = (b"content-type", JSON)
HTML = b"text/html; charset=utf-8"
DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY
MAX_ERROR_CHARS = 1000  # an error body never grows with the request


def json_body(obj: Any) -> bytes:
    """``obj`` as JSON bytes (NumPy values serialised)."""
    return orjson.dumps(obj, option=DUMP_OPTS)


def error_body(exc: ServingError) -> bytes:
    """A refusal's body: its message and hint, never longer than MAX_ERROR_CHARS."""
    text = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    return json_body({"error": text[:MAX_ERROR_CHARS]})


def internal_error_body(exc: Exception) -> bytes:
    """A bug's body: its type and a short message (the traceback goes to the log)."""
    return json_body({"error": f"internal error: {type(exc).__name__}: {shorten(str(exc), 200)}"})


async def send_response(
    send: Any,
    status: int,
    body: bytes,
    request_id: bytes,
    content_type: bytes = JSON,
    header_length: int | None = None,
    allow: bytes | None = None,
) -> None:
    """A whole response; ``header_length`` marks a binary V2 answer (its JSON header's
    length in ``Inference-Header-Content-Length``); ``allow``: a 405's methods."""
    headers = [
        (b"content-type", content_type) if content_type is not JSON else JSON_TYPE,
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", request_id),
    ]
    if header_length is not None:
        headers.append((binary.HEADER, b"%d" % header_length))
    if allow is not None:
        headers.append((b"allow", allow))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
