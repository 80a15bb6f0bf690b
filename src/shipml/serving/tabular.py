"""CSV request bodies (``Content-Type: text/csv`` on ``/invocations``), as MLflow's scoring
server and SageMaker clients send them: a header row naming the features (what
``DataFrame.to_csv(index=False)`` writes), or no header and the features in the
signature's order (SageMaker's convention).

The columns are read with the signature's types, as ``shipml predict`` reads a CSV file
(serving/batch.py): numbers as numbers, text as text, an empty field (or ``NA``, ``null``)
missing. The one validator then checks them as it checks JSON columns.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from shipml.errors import InvalidRequest, UnsupportedMediaType
from shipml.serving.validation import Rows, Validator, shorten

CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
HINT = "send a header row of feature names (DataFrame.to_csv(index=False)), or no header "
ORDER = "and the features in this order: {}"


def body_format(content_type: bytes | None) -> str:
    """``csv`` or ``json``, the format of an ``/invocations`` body by its Content-Type (any
    type but CSV is read as JSON, as curl's default form type is); a charset other than
    UTF-8 or a Parquet body is an UnsupportedMediaType (415), as MLflow refuses them."""
    if content_type is None:
        return "json"
    mime, _, params = content_type.decode("latin-1").partition(";")
    mime = mime.strip().lower()
    for param in params.split(";"):
        key, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if key.strip().lower() == "charset" and charset not in ("utf-8", "utf8", "us-ascii"):
            raise UnsupportedMediaType(
                f"charset {shorten(charset)} is not supported: bodies are read as UTF-8",
                hint="send the body encoded as UTF-8 (charset=utf-8)",
            )
    if mime == PARQUET:
        raise UnsupportedMediaType(
            "Parquet bodies are not read by this server",
            hint="send the rows as JSON (dataframe_split, dataframe_records, instances, "
            "inputs) or as CSV (Content-Type: text/csv)",
        )
    return "csv" if mime == CSV else "json"


def parse_csv(raw: bytes, validator: Validator) -> Rows:
    """The rows of a CSV body, validated."""
    if validator.tensors:
        name = next(iter(validator.tensors))
        raise InvalidRequest(
            f"feature {name!r} is a tensor, which a CSV row cannot carry",
            hint="send JSON (instances or inputs) with one nested list per row",
        )
    names = validator.names
    header = _header(raw, names)
    read = pacsv.ReadOptions(column_names=None if header else list(names))
    types = {
        f.name: pa.string() if f.type == "string" else pa.float64()
        for f in validator.signature.features
    }
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    try:
        table = pacsv.read_csv(
            pa.BufferReader(raw),
            read_options=read,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=convert,
        )
    except (pa.ArrowException, UnicodeDecodeError) as exc:  # every reading error of Arrow
        raise InvalidRequest(
            f"the CSV body cannot be read: {shorten(str(exc), 200)}",
            hint=HINT + ORDER.format(", ".join(names)),
        ) from None
    columns: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in columns:
            raise InvalidRequest(f"the CSV header names feature {shorten(name)} twice")
        columns[name] = column.to_numpy(zero_copy_only=False)
    return validator.columns(columns)


def _header(raw: bytes, names: list[str]) -> bool:
    """Whether the body starts with a header row: yes unless its first row has one field
    per feature and none of them is a feature's name (then it is data, in signature
    order). A first row of the wrong width that names no feature is refused here."""
    line = raw[: raw.find(b"\n")] if b"\n" in raw else raw
    try:
        text = line.decode("utf-8-sig")
        fields = next(csv.reader(io.StringIO(text)), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidRequest(f"the CSV body cannot be read: {shorten(str(exc), 200)}") from None
    if not any(field in names for field in fields):
        if len(fields) == len(names):
            return False
        raise InvalidRequest(
            f"the CSV body's first row has {len(fields)} field(s) and names no feature; "
            f"the model takes {len(names)} features",
            hint=HINT + ORDER.format(", ".join(names)),
        )
    if fields and fields[0] == "":
        raise InvalidRequest(
            "the CSV header's first column has no name (a DataFrame's index?)",
            hint="write the CSV with DataFrame.to_csv(index=False)",
        )
    return True
