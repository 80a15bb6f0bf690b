"""How the step cache keeps a DataFrame: its digest, and its column labels as the step
returned them (``cache.py`` writes and reads the Parquet file)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa

from shipml.data import table_digest
from shipml.errors import PipelineError


def frame_digest(df: pd.DataFrame) -> str:
    index = df.index.to_frame(index=False)
    index.columns = [f"__index_{i}__" for i in range(index.shape[1])]
    return hashlib.sha256((table_digest(df) + table_digest(index)).encode()).hexdigest()


LABELS = b"shipml.columns"  # Parquet metadata: the labels Parquet itself would not keep


def labels_of(columns: pd.Index) -> tuple[bool, bytes | None]:
    """How a frame's column labels are kept: whether Parquet keeps them as they are (``0``,
    ``1.5``, tuples, timestamps: written as they are), else the labels as JSON for the
    file's metadata (mixed ``0`` and ``"s"``, booleans: written as strings, given back on
    load). A name given twice (or ``1`` and ``"1"``) cannot be stored by name."""
    names = [str(c) for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PipelineError(
            f"more than one column is named {', '.join(map(repr, twice))}",
            hint="give each column a name of its own (df.columns = [...]) before returning it",
        )
    if all(isinstance(c, str) for c in columns):
        return False, None
    probe = io.BytesIO()
    pd.DataFrame(columns=columns).to_parquet(probe)
    back = pd.read_parquet(pa.BufferReader(probe.getvalue())).columns
    if back.equals(columns) and [type(c) for c in back] == [type(c) for c in columns]:
        return True, None
    plain = [c.item() if isinstance(c, np.generic) else c for c in columns]
    if all(isinstance(c, str | int | float | bool) for c in plain):
        return False, json.dumps(plain).encode()
    return False, None  # other mixtures: as strings (docs/pipelines.md)
