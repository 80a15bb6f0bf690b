"""Schema and statistical profile of a table: what a snapshot records about its data.

The profile (per-column summary and histogram) is the reference that drift
monitoring later compares live traffic against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from shipml.data.digest import logical_type

MAX_CATEGORIES = 50
HISTOGRAM_BINS = 20
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _num(value: Any) -> float | None:
    f = float(value)
    return None if math.isnan(f) or math.isinf(f) else f


def table_schema(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per column: name, logical type, pandas dtype, nullability, categories."""
    schema = []
    for name in df.columns:
        col = df[name]
        kind = logical_type(col)
        entry: dict[str, Any] = {
            "name": str(name),
            "type": kind,
            "dtype": str(col.dtype),
            "nullable": bool(col.isna().any()),
            "categories": None,
        }
        if kind in ("string", "bool"):
            values = col.dropna().astype(str).unique()
            if len(values) <= MAX_CATEGORIES:
                entry["categories"] = sorted(values.tolist())
        schema.append(entry)
    return schema


def _histogram(ordered: np.ndarray) -> dict[str, list[Any]] | None:
    """``np.histogram(values, HISTOGRAM_BINS)`` from the sorted values: the same edges, and
    the same half-open bins ``[edges[i], edges[i + 1])`` (the last one closed) counted by
    binary search instead of a pass over every value. None when the range cannot be cut
    into finite bins (a constant 1e17: ±0.5 is lost in rounding; a range beyond float)."""
    try:
        edges = np.histogram_bin_edges(ordered[[0, -1]], bins=HISTOGRAM_BINS)
    except ValueError:
        return None
    cuts = np.searchsorted(ordered, edges[1:-1], side="left")
    counts = np.diff(np.concatenate(([0], cuts, [len(ordered)])))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _numeric(col: pd.Series, out: dict[str, Any]) -> None:
    values = col.to_numpy(dtype="float64", na_value=np.nan)
    finite = values[np.isfinite(values)]
    if not len(finite):
        out.update(
            mean=None,
            std=None,
            min=None,
            max=None,
            quantiles={f"p{round(q * 100):02d}": None for q in QUANTILES},
        )
        return
    # One sort (vectorised in numpy) gives min, max, quantiles and histogram; np.quantile
    # alone partitions the values again for each column, several times slower. The
    # quantiles of the sorted copy are np.quantile's (the same order statistics, the same
    # interpolation); mean, std, min and max are taken in the original order.
    ordered = np.sort(finite)
    histogram = _histogram(ordered)
    qs = np.quantile(ordered, QUANTILES, overwrite_input=True)  # may reorder: used last
    out.update(
        mean=_num(finite.mean()),
        std=_num(finite.std(ddof=1)) if len(finite) > 1 else None,
        min=_num(finite.min()),  # not ordered[0]: which of -0.0 and 0.0 comes first varies
        max=_num(finite.max()),
        quantiles={f"p{round(q * 100):02d}": _num(v) for q, v in zip(QUANTILES, qs, strict=True)},
    )
    if histogram is not None:
        out["histogram"] = histogram


def column_profile(col: pd.Series) -> dict[str, Any]:
    kind = logical_type(col)
    missing = int(col.isna().sum())
    out: dict[str, Any] = {"type": kind, "count": int(len(col) - missing), "missing": missing}
    if kind in ("int", "float"):
        if missing < len(col):
            with np.errstate(over="ignore", invalid="ignore"):  # overflows become null
                _numeric(col, out)
        return out
    present = col.dropna()
    if kind in ("string", "bool"):
        counts = present.astype(str).value_counts()
        out["unique"] = len(counts)
        out["top"] = {str(k): int(v) for k, v in counts.head(MAX_CATEGORIES).items()}
    elif kind == "datetime" and len(present):
        out.update(min=str(present.min()), max=str(present.max()))
    return out


def table_profile(df: pd.DataFrame) -> dict[str, Any]:
    """Row count and a per-column profile (summary statistics, histogram or counts)."""
    return {
        "rows": len(df),
        "columns": {str(name): column_profile(df[name]) for name in df.columns},
    }
