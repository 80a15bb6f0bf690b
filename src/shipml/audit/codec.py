"""How a record becomes bytes: canonical JSON (what is hashed) and its compressed form
(what is stored).

The canonical form is what the Merkle leaf hashes, so anyone can re-check a record with
``sha256(0x00 || json)``. A record must never change a value on the way: orjson writes
NaN and infinity as ``null``, so ``canonical`` refuses them; ``exact`` turns an array
holding them into a list where they are the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (a numeric column holds numbers otherwise, so the strings are
unambiguous).

Stored bytes are zstd frames. A writer session trains nothing: its dictionary is the
canonical bytes of its first prediction record (records of one server differ only in
their values), kept in the ``dictionaries`` table, so a similar record of 600 bytes is
stored in about 150.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import zstandard

from shipml.errors import AuditError

OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}
LEVEL = 1  # on records of a few hundred bytes, level 3 saves 1% for 40% more time


def canonical(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no white space, UTF-8 (NumPy values serialised).
    NaN and infinity are refused (orjson would write them as null)."""
    try:
        out = orjson.dumps(obj, option=OPTIONS)
    except TypeError as exc:
        raise AuditError(f"a record cannot be written as JSON: {exc}") from exc
    # Every NaN or infinity became a ``null``, and so did every None. When the ``null``s
    # are exactly the Nones, there is none of the others (and no text "null" in a
    # string); otherwise look at each value.
    if b"null" in out and out.count(b"null") != _nones(obj):
        _check_finite(obj)
    return out


def _nones(obj: Any) -> int:
    """How many None values ``obj`` holds (NumPy arrays hold none that orjson writes;
    orjson refuses nesting past 255 levels, so this recursion is bounded)."""
    kind = type(obj)
    if kind is dict:
        values: Any = obj.values()
    elif kind is list or kind is tuple:
        values = obj
    else:
        return int(obj is None)
    count = 0
    for value in values:
        if value is None:
            count += 1
        elif type(value) in _CONTAINERS:
            count += _nones(value)
    return count


_CONTAINERS = frozenset({dict, list, tuple})


def _check_finite(obj: Any) -> None:
    """Raise if a float anywhere in ``obj`` is NaN or infinite (one pass, no recursion)."""
    stack = [obj]
    plain = _PLAIN
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            stack += [v for v in value.values() if type(v) not in plain]
        elif kind is list or kind is tuple:
            stack += [v for v in value if type(v) not in plain]
        elif kind is np.ndarray:
            if value.dtype.kind in "fc" and value.size and not _finite_array(value):
                raise AuditError(_NON_FINITE_MESSAGE)
        elif isinstance(value, float | np.floating) and not math.isfinite(value):
            raise AuditError(_NON_FINITE_MESSAGE)


def _finite_array(arr: np.ndarray) -> bool:
    """Every value finite? One reduction: a sum of squares is finite when every value is
    (one that overflows falls through to the exact check)."""
    return math.isfinite(np.vdot(arr, arr).real) or bool(np.isfinite(arr).all())


_PLAIN = frozenset({str, int, bool, type(None)})
_NON_FINITE_MESSAGE = (
    "a record holds NaN or infinity, which JSON cannot hold: write it with "
    "shipml.audit.exact() (as the strings NaN, Infinity, -Infinity)"
)


def exact(values: Any) -> Any:
    """``values`` (an array or a list) as something ``canonical`` writes without loss:
    the array itself when every number is finite, else a list with the strings
    ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` in place of those values."""
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.dtype.kind == "f":
        if _finite_array(arr):
            return arr
        return _spell(arr.tolist(), arr.dtype == np.float32)
    if arr.dtype == object:
        return _spell(arr.tolist())
    return arr


def _spell(value: Any, single: bool = False) -> Any:
    """Non-finite floats as strings; float32 values written as orjson writes a float32
    array (the shortest text that reads back as the same float32)."""
    if isinstance(value, list):
        return [_spell(v, single) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if value != value else NON_FINITE[value]
        return float(str(np.float32(value))) if single else value
    return value


SPELLED = {"NaN": None, "Infinity": math.inf, "-Infinity": -math.inf}


def input_columns(recorded: Any, names: list[str]) -> dict[str, list[Any]] | None:
    """A prediction record's ``input`` as the server writes it (``{"matrix": rows}`` in
    feature order, or ``{"columns": {feature: values}}``) as one list per feature, a
    missing number (``"NaN"``) as None and the infinities as floats; None for anything
    else (an older record's request body, or ``{"sha256": ...}``)."""
    if not isinstance(recorded, dict):
        return None
    matrix = recorded.get("matrix")
    if isinstance(matrix, list) and all(isinstance(r, list) for r in matrix):
        return {n: [_number(row[i]) for row in matrix] for i, n in enumerate(names)}
    columns = recorded.get("columns")
    if isinstance(columns, dict):
        return {k: _column(v) for k, v in columns.items() if isinstance(v, list)}
    return None


def _number(value: Any) -> Any:
    return SPELLED.get(value, value) if isinstance(value, str) else value


def _column(values: list[Any]) -> list[Any]:
    numeric = any(isinstance(v, int | float) for v in values) or all(v in SPELLED for v in values)
    return [_number(v) for v in values] if numeric else values


class Compressor:
    """zstd with an optional raw-content dictionary (one per writer session)."""

    def __init__(self, dictionary: bytes | None = None) -> None:
        data = (
            zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            if dictionary
            else None
        )
        self._zstd = zstandard.ZstdCompressor(
            level=LEVEL, dict_data=data, write_checksum=False, write_content_size=True
        )

    def compress(self, raw: bytes) -> bytes:
        return self._zstd.compress(raw)


class Decompressor:
    """Reads stored records; the dictionaries come from the log itself."""

    def __init__(self, dictionaries: dict[int, bytes]) -> None:
        self._dicts = dictionaries
        self._by_id: dict[int, Any] = {0: zstandard.ZstdDecompressor()}

    def decompress(self, blob: bytes, dictionary: int) -> bytes:
        reader = self._by_id.get(dictionary)
        if reader is None:
            data = self._dicts.get(dictionary)
            if data is None:
                raise ValueError(f"dictionary {dictionary} is missing")
            reader = self._by_id[dictionary] = zstandard.ZstdDecompressor(
                dict_data=zstandard.ZstdCompressionDict(
                    data, dict_type=zstandard.DICT_TYPE_RAWCONTENT
                )
            )
        size = zstandard.get_frame_parameters(blob).content_size
        if size > MAX_RECORD or size == zstandard.CONTENTSIZE_UNKNOWN:
            raise ValueError(f"the stored frame claims {size} bytes")
        # One frame and nothing else: bytes after it (zstd ignores them by default) would
        # change the stored record without changing what it reads as.
        return bytes(reader.decompress(blob, allow_extra_data=False))


MAX_RECORD = 1 << 30  # a record never decompresses past 1 GiB (a forged frame cannot OOM us)
