"""Request bodies as JSON text: orjson first, and the one fallback Python clients need
(their ``NaN`` literal), held to the same rules: no infinities, no lone surrogates."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from shipml.errors import InvalidRequest
from shipml.serving.validation import shorten


def loads(raw: bytes) -> Any:
    """orjson on the fast path; Python's json as a fallback, because Python clients (Triton's
    among them) write a missing float as the non-standard literal NaN."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            body = json.loads(raw, parse_constant=_constant)
        except InvalidRequest:
            raise
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidRequest(f"malformed JSON: {shorten(str(exc), 200)}") from exc
        if SURROGATE.search(raw):  # json, unlike orjson, lets a lone one through
            _refuse_lone_surrogates(body)
        return body


# A UTF-16 surrogate in JSON text: escaped (\uD800-\uDFFF) or encoded (ED A0-BF ..).
SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _refuse_lone_surrogates(body: Any) -> None:
    """A string holding half a surrogate pair is no text: no model can take it (the
    ONNX runtime fails to encode it)."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            "a string in the body is not valid Unicode: "
            f"{shorten(exc.object[exc.start : exc.end])} is half of a UTF-16 surrogate pair",
            hint="send text as UTF-8 (or \\u escapes of whole characters)",
        ) from None


def _constant(name: str) -> float:
    """NaN is a missing value; Infinity and -Infinity are refused."""
    if name == "NaN":
        return float("nan")
    raise InvalidRequest(
        f"non-finite number {name} in the body",
        hint="send finite numbers; null (or NaN) for a missing value",
    )
