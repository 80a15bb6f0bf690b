"""The content digest of a table: sha256 over a canonical encoding of every row.

MLflow's own dataset digest hashes only the first 10,000 rows; this one covers the
whole table, so a change to any single cell changes it. The encoding (version
``shipml-table-v1``) is documented in docs/data.md and is, in order:

1. the bytes ``b"shipml-table-v1\\n"``, then the row count and the column count,
   each as an unsigned 64-bit little-endian integer;
2. for each column, in table order:
   - its name and its logical type (``bool``, ``int``, ``float``, ``datetime``,
     ``string``), each as a u64 length followed by UTF-8 bytes;
   - the validity mask, one byte per row (1 = present, 0 = missing);
   - the values, with missing ones replaced by zero / the empty string:
     ``bool`` as one byte, ``int`` as i64, ``float`` as f64 (``-0.0`` made
     ``0.0``), ``datetime`` as i64 nanoseconds since the epoch (UTC), ``string``
     as a u64 UTF-8 byte length per row followed by all the UTF-8 bytes.

Categorical columns are encoded by their values, not their codes, so a CSV and
the Parquet snapshot written from it have the same digest.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipml.errors import DataError

FORMAT = "shipml-table-v1"


def logical_type(series: pd.Series) -> str:
    """The logical type a column is hashed (and described) as."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_object_dtype(dtype) and (
        pd.api.types.infer_dtype(series, skipna=True) == "boolean"
    ):
        return "bool"  # True/False with missing values (as a CSV gives them)
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "string"
    raise DataError(
        f"column '{series.name}' has type {dtype}, which shipml cannot snapshot",
        hint="convert it to numbers, booleans, datetimes or strings before adding the data",
    )


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def _text(h: Any, value: str) -> None:
    raw = value.encode("utf-8")
    h.update(_u64(len(raw)))
    h.update(raw)


def _string_values(series: pd.Series, valid: np.ndarray) -> pa.LargeStringArray:
    if isinstance(series.dtype, pd.StringDtype) or (
        series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) == "string"
    ):
        # Only strings (and missing values): converted by Arrow in C, without a Python
        # object per cell (pandas' own string columns are Arrow arrays already).
        arr = pa.array(series, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        return pc.fill_null(arr.cast(pa.large_string()), "")
    values = series.astype(object).where(valid, "")
    objects = values.to_numpy(dtype=object)
    # The kinds of values in one pass in C; a Python check per value only when one is not
    # a string (the error path): a per-cell isinstance was a fifth of `shipml data add`.
    kinds = set(map(type, objects))
    if not all(issubclass(kind, str) for kind in kinds):
        first = next(v for v in objects if not isinstance(v, str))
        what = "mixes strings with" if any(issubclass(k, str) for k in kinds) else "holds"
        raise DataError(
            f"column '{series.name}' {what} {type(first).__name__} values "
            f"(for example {str(repr(first))[:80]}), which shipml cannot snapshot",
            hint="make the column one type (numbers, booleans, datetimes or strings, for "
            "example with .astype(str)) before adding the data",
        )
    return pa.array(objects, type=pa.large_string())


def _update_column(h: Any, series: pd.Series) -> None:
    kind = logical_type(series)
    _text(h, str(series.name))
    _text(h, kind)
    valid = series.notna().to_numpy(dtype=bool)
    h.update(valid.view(np.uint8))  # arrays are hashed in place, not copied to bytes
    if kind == "string":
        arr = _string_values(series, valid)
        offsets = np.frombuffer(arr.buffers()[1], dtype="<i8")[
            arr.offset : arr.offset + len(arr) + 1
        ]
        h.update(np.diff(offsets).astype("<u8"))
        data = arr.buffers()[2]
        if data is not None:
            h.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
        return
    if kind == "datetime":
        stamps = pd.to_datetime(series, utc=True)
        values = stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view("<i8").copy()
        values[~valid] = 0
        h.update(values)
        return
    target = {"bool": "u1", "int": "<i8", "float": "<f8"}[kind]
    filled = series.to_numpy(dtype="float64" if kind == "float" else target, na_value=0)
    if kind == "float":
        filled = np.where(valid, filled, 0.0) + 0.0  # +0.0 turns -0.0 into 0.0
    h.update(np.ascontiguousarray(filled, dtype=target))


def table_digest(df: pd.DataFrame) -> str:
    """The hex sha256 of ``df``'s canonical encoding (every row, every column)."""
    h = hashlib.sha256()
    h.update((FORMAT + "\n").encode())
    h.update(_u64(len(df)))
    h.update(_u64(len(df.columns)))
    for name in df.columns:
        _update_column(h, df[name])
    return h.hexdigest()


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
