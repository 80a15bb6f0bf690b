"""Which step outputs the cache keeps as JSON: plain values, of JSON's own Python types."""

from __future__ import annotations

import json
from typing import Any

_JSON_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """Made of JSON's own Python types exactly, as json.loads gives them back: a NumPy
    float64 or str_ is a float or a str (a subclass) and json writes it, but a cached run
    handed the step after it a Python float or str where the first run had handed the
    NumPy value (``.item()``, ``.dtype`` then failed, or an ``isinstance`` took the
    other branch). Such values are kept by skops instead, with their type."""
    if type(value) in _JSON_SCALARS:
        return True
    if type(value) is list:
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


def json_value(value: Any) -> bytes | None:
    """``value`` as sorted-key JSON when it is plain (``_plain``) and comes back from
    JSON unchanged, else None."""
    try:
        if not _plain(value):
            return None
        text = json.dumps(value, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return None
    return text.encode("utf-8") if json.loads(text) == value else None
