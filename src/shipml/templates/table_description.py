"""What `shipml init --data` reads off a table: its task (from the target) and its
columns, sorted into numeric and categorical features and the ones that are not
features (always missing, a constant, a date, an identifier or free text), each with the
reason said to the user."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from shipml.errors import ProjectError

TASKS = ("classification", "regression")
MAX_CLASSES = 100
FORMATS = (".csv", ".csv.gz", ".parquet", ".pq")


def read_table(path: Path) -> pd.DataFrame:
    from shipml.data.source import parse_source, read_source

    if not path.is_file():
        raise ProjectError(f"no data file at {path}", hint="give the path of a CSV or Parquet file")
    if not str(path).lower().endswith(FORMATS):
        raise ProjectError(
            f"cannot tell the format of {path.name!r}",
            hint="give a file ending in .csv, .csv.gz, .parquet or .pq",
        )
    frame = parse_source(read_source(str(path.resolve())))
    if frame.empty or len(frame.columns) < 2:
        raise ProjectError(
            f"{path.name} has {len(frame)} rows and {len(frame.columns)} columns",
            hint="a project needs a table with a target column and at least one feature",
        )
    return frame


def infer_task(y: pd.Series, task: str | None) -> tuple[str, str]:
    """The task and why, in words the user reads."""
    values = y.dropna()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    distinct = int(values.nunique())
    if task is not None:
        if task not in TASKS:
            raise ProjectError(f"unknown task {task!r}", hint="use classification or regression")
        if task == "regression" and not numeric:
            raise ProjectError(
                f"the target {y.name!r} is not numeric (e.g. {str(values.iloc[0])[:30]!r}): "
                "it cannot be regressed",
                hint="use --task classification, or choose a numeric target",
            )
        return task, "as asked (--task)"
    if numeric and (distinct > 20 or not all(float(v).is_integer() for v in values.unique())):
        return "regression", f"the target is numeric with {distinct} distinct values"
    return "classification", f"the target has {distinct} distinct values"


# Dates as a CSV holds them: 2024-01-31, 2024/01/31, 31.01.2024, 01/31/2024, with an
# optional time of day and zone.
_DATE = re.compile(
    r"(\d{4}[-/]\d{1,2}[-/]\d{1,2}|\d{1,2}[./]\d{1,2}[./]\d{4})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"
)


def _dates(values: pd.Series) -> bool:
    """Text that is a date in every row: a category per day would be a feature no
    future row shares."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return False
    return all(isinstance(v, str) and _DATE.fullmatch(v.strip()) for v in values.unique())


def _running_number(values: pd.Series) -> bool:
    """Integers, one per row, that count the rows (0..n-1, 1..n, 1001..): a row id."""
    if not pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    low, high = int(values.min()), int(values.max())
    return len(values) >= 30 and high - low + 1 == len(values) == values.nunique()


def _refuse_infinity(df: pd.DataFrame) -> None:
    """A column holding infinity: no model learns from it, and no range or bound read
    from it means anything."""
    import numpy as np

    for col in df.columns:
        if not pd.api.types.is_float_dtype(df[col]):
            continue
        where = np.flatnonzero(np.isinf(df[col].to_numpy(float)))
        if len(where):
            raise ProjectError(
                f"column {str(col)[:60]!r} holds infinity in {len(where)} row(s) (the first: "
                f"row {where[0] + 1} of the data)",
                hint="replace those values (or leave them empty: missing values are "
                "handled) and run `shipml init` again",
            )


def describe(df: pd.DataFrame, target: str, task: str | None) -> dict[str, Any]:
    if target not in df.columns:
        shown = ", ".join(repr(str(c)) for c in list(df.columns)[:20])
        raise ProjectError(
            f"no column {target[:60]!r} in the data",
            hint=f"--target takes one of its columns: {shown}",
        )
    y = df[target]
    if y.notna().sum() < 30:
        raise ProjectError(
            f"the target {target!r} has {int(y.notna().sum())} values",
            hint="a model needs at least 30 rows with a target",
        )
    _refuse_infinity(df)
    task, reason = infer_task(y, task)
    info: dict[str, Any] = {"task": task, "reason": reason, "numeric": [], "categorical": []}
    info["dropped"] = dropped = {}
    rows = len(df)
    for col in df.columns:
        if col == target:
            continue
        values = df[col].dropna()
        distinct = int(values.nunique())
        if values.empty:
            dropped[col] = "always missing"
        elif distinct < 2:
            dropped[col] = "constant"
        elif pd.api.types.is_datetime64_any_dtype(values) or _dates(values):
            dropped[col] = "a date (derive features from it in ingest)"
        elif _running_number(values):
            dropped[col] = (
                f"an identifier (every row's own number, {values.min()} to {values.max()})"
            )
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            info["numeric"].append(col)
        elif distinct > 50 and distinct > 0.5 * rows:
            dropped[col] = f"an identifier or free text ({distinct} distinct values)"
        else:
            info["categorical"].append(col)
    if not info["numeric"] and not info["categorical"]:
        raise ProjectError(
            "no column is left as a feature "
            f"({'; '.join(f'{c}: {w}' for c, w in dropped.items())[:300]})",
            hint="give a table with features beside the target",
        )
    if task == "classification":
        counts = y.dropna().astype(str).value_counts()
        if len(counts) > MAX_CLASSES:
            raise ProjectError(
                f"the target {target!r} has {len(counts)} classes",
                hint="use --task regression for a numeric target, or choose another column",
            )
        if counts.min() < 10:
            raise ProjectError(
                f"class {str(counts.idxmin())[:40]!r} of {target!r} has {counts.min()} rows",
                hint="cross-validation needs at least 10 rows of every class: merge or drop "
                "the rare classes first",
            )
        info["classes"] = [str(c) for c in counts.index]
    return info
