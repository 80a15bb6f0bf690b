"""Batch scoring: a CSV or Parquet file in, the same rows with predictions out.

Streamed in chunks with pyarrow, so memory stays flat in the input's size; each chunk
is validated like a request and scored in one onnxruntime call."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shipml.errors import DataError, InvalidRequest
from shipml.files import output_file
from shipml.serving.predictor import Predictor
from shipml.serving.validation import Validator


@dataclass
class BatchResult:
    rows: int  # rows scored
    chunks: int
    output: Path
    refused: int = 0  # rows skipped or flagged (--on-error skip|flag)


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Slices of at most ``rows`` rows (CSV blocks are sized in bytes, not rows)."""
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _chunks(
    path: Path, chunk_rows: int, types: dict[str, pa.DataType]
) -> tuple[Iterator[pa.RecordBatch], int | None]:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        file = pq.ParquetFile(path)
        return file.iter_batches(batch_size=chunk_rows), file.metadata.num_rows
    if name.endswith((".csv", ".csv.gz")):
        options = pacsv.ReadOptions(block_size=max(1 << 20, chunk_rows * 64))
        # The signature fixes the features' types: no guessing from the first block.
        convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
        reader = pacsv.open_csv(path, read_options=options, convert_options=convert)
        return _rechunk(iter(reader), chunk_rows), None
    raise DataError(f"cannot tell the format of {path}", hint="give a .csv or .parquet file")


ON_ERROR = ("fail", "skip", "flag")
LABEL_TYPES = {"string": pa.string(), "int": pa.int64(), "float": pa.float64()}


def bad_rows(validator: Validator, columns: dict[str, np.ndarray]) -> dict[int, str]:
    """Row index -> why it is refused, found by bisection (a valid half is checked once)."""
    n = len(next(iter(columns.values()))) if columns else 0
    found: dict[int, str] = {}

    def search(start: int, end: int) -> None:
        try:
            validator.columns({k: v[start:end] for k, v in columns.items()})
        except InvalidRequest as exc:
            if end - start == 1:
                found[start] = re.sub(r" at row \d+", "", exc.message)
                return
            middle = (start + end) // 2
            search(start, middle)
            search(middle, end)

    if n:
        search(0, n)
    return found


@dataclass
class _Scored:
    """One chunk: which rows were scored, their outputs, and why the others were not."""

    keep: np.ndarray  # bool per row of the chunk
    labels: np.ndarray
    probabilities: np.ndarray | None
    errors: dict[int, str]


def _score_chunk(
    predictor: Predictor,
    validator: Validator,
    frame: Any,
    first_row: int,
    source: Path,
    on_error: str,
) -> _Scored:
    columns = {n: frame[n].to_numpy() for n in frame.columns if n in validator.features}
    keep = np.ones(len(frame), dtype=bool)
    errors: dict[int, str] = {}
    try:
        rows_in = validator.columns(columns)  # extra columns pass through
    except InvalidRequest as exc:
        errors = bad_rows(validator, columns) if set(columns) == set(validator.names) else {}
        if on_error == "fail" or not errors:
            where = f"row {first_row + min(errors)}" if errors else f"rows from {first_row}"
            detail = errors[min(errors)] if errors else exc.message
            raise DataError(
                f"{source}, {where}: {detail}",
                hint=(exc.hint or "fix the row")
                + "; or score the other rows with --on-error skip|flag",
            ) from exc
        keep[list(errors)] = False
        if not keep.any():
            return _Scored(keep, np.asarray([]), None, errors)
        rows_in = validator.columns({k: v[keep] for k, v in columns.items()})
    out = predictor.run(predictor.feeds(rows_in))
    return _Scored(keep, out.labels, out.probabilities, errors)


def _output_table(
    batch: pa.RecordBatch,
    scored: _Scored,
    classes: list[str],
    on_error: str,
    label_type: pa.DataType,
) -> pa.Table:
    keep = scored.keep
    table = pa.Table.from_batches([batch])
    if on_error == "skip" and not keep.all():
        table = table.filter(pa.array(keep))
        keep = keep[keep]
    labels: list[Any] = [None] * len(keep)
    for row, label in zip(np.flatnonzero(keep).tolist(), scored.labels.tolist(), strict=True):
        labels[row] = label
    table = table.append_column("prediction", pa.array(labels, type=label_type))
    if classes and (scored.probabilities is not None or not keep.any()):
        proba = np.full((len(keep), len(classes)), np.nan)
        if scored.probabilities is not None:
            proba[keep] = np.asarray(scored.probabilities, dtype=np.float64)
        for i, cls in enumerate(classes):
            table = table.append_column(f"probability_{cls}", pa.array(proba[:, i], mask=~keep))
    if on_error == "flag":
        errors = [scored.errors.get(i) for i in range(len(keep))]
        table = table.append_column("error", pa.array(errors, type=pa.string()))
    return table


OUTPUT_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def _writer(tmp: Path, output: Path, schema: pa.Schema) -> pacsv.CSVWriter | pq.ParquetWriter:
    """Parquet, gzipped CSV or CSV, by the output's name (a device or pipe gets CSV)."""
    name = output.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pq.ParquetWriter(tmp, schema)
    if name.endswith(".gz"):
        return _GzipCSVWriter(tmp, schema)
    return pacsv.CSVWriter(tmp, schema)


class _GzipCSVWriter(pacsv.CSVWriter):
    """A CSV writer into a gzip stream that it closes (pyarrow's leaves a stream it was
    given open: the gzip trailer would be written whenever the stream is collected)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._stream = pa.CompressedOutputStream(str(path), "gzip")
        super().__init__(self._stream, schema)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._stream.close()


def _check_output(source: Path, output: Path) -> None:
    """Refuse an output that is the input (scoring would replace the data it reads) or
    whose name says no format this writes."""
    if output.exists() and source.exists() and os.path.samefile(source, output):
        raise DataError(
            f"the output {output} is the input file: scoring would replace the data it reads",
            hint="write the scores to another file (-o scored.csv)",
        )
    regular = not output.exists() or output.is_file()
    if regular and not output.name.lower().endswith(OUTPUT_SUFFIXES):
        raise DataError(
            f"cannot tell which format to write from the output's name: {output.name}",
            hint="name it .csv, .csv.gz or .parquet",
        )


def predict_file(
    predictor: Predictor,
    source: Path,
    output: Path,
    *,
    chunk_rows: int = 50_000,
    progress: Callable[[int, int | None], None] | None = None,
    on_error: str = "fail",
) -> BatchResult:
    """Score ``source`` into ``output``. A row the model cannot take (a missing value, an
    unknown category...) stops the scoring (``fail``, naming the row and the column), is
    left out (``skip``), or is kept with an ``error`` column and no prediction (``flag``)."""
    if on_error not in ON_ERROR:
        raise DataError(f"unknown --on-error {on_error!r}", hint="use fail, skip or flag")
    if not source.is_file():
        raise DataError(f"input file not found: {source}", hint="check the path")
    _check_output(source, output)
    validator = Validator(predictor.signature)
    try:
        types = {
            f.name: pa.string() if f.type == "string" else pa.float64()
            for f in predictor.signature.features
        }
        batches, total = _chunks(source, chunk_rows, types)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {source}: {exc}") from exc
    writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
    rows = chunks = refused = 0
    classes = [str(c) for c in predictor.signature.classes]
    label_type = LABEL_TYPES.get(predictor.signature.label_type, pa.string())
    try:
        with output_file(output) as tmp:
            for batch in batches:
                scored = _score_chunk(
                    predictor, validator, batch.to_pandas(), rows, source, on_error
                )
                table = _output_table(batch, scored, classes, on_error, label_type)
                writer = writer or _writer(tmp, output, table.schema)
                writer.write_table(table)
                rows += batch.num_rows
                refused += len(scored.errors)
                chunks += 1
                if progress is not None:
                    progress(rows, total)
            if writer is None:
                raise DataError(f"{source} has no rows", hint="give a file with a header and rows")
            writer.close()
            writer = None
    except pa.ArrowInvalid as exc:
        raise DataError(f"cannot read {source}: {exc}") from exc
    except OSError as exc:
        raise DataError(
            f"cannot score {source} into {output}: {exc.strerror or exc}",
            hint="check both paths and the free space",
        ) from exc
    finally:
        if writer is not None:
            writer.close()
    return BatchResult(rows - refused, chunks, output, refused=refused)
