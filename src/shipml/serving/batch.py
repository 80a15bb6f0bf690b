"""Batch scoring: a CSV or Parquet file in, the same rows with predictions out.

Streamed in chunks with pyarrow, so memory stays flat in the input's size; each chunk
is validated like a request and scored in one onnxruntime call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shipml.errors import DataError, InvalidRequest
from shipml.serving.predictor import Predictor
from shipml.serving.validation import Validator


@dataclass
class BatchResult:
    rows: int
    chunks: int
    output: Path


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


def predict_file(
    predictor: Predictor,
    source: Path,
    output: Path,
    *,
    chunk_rows: int = 50_000,
    progress: Callable[[int, int | None], None] | None = None,
) -> BatchResult:
    if not source.is_file():
        raise DataError(f"input file not found: {source}", hint="check the path")
    validator = Validator(predictor.signature)
    try:
        types = {
            f.name: pa.string() if f.type == "string" else pa.float64()
            for f in predictor.signature.features
        }
        batches, total = _chunks(source, chunk_rows, types)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {source}: {exc}") from exc
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.partial")
    writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
    rows = chunks = 0
    classes = [str(c) for c in predictor.signature.classes]
    try:
        for batch in batches:
            frame = batch.to_pandas()
            try:
                rows_in = validator.columns(
                    {
                        name: frame[name].to_numpy()
                        for name in frame.columns
                        if name in validator.features
                    }  # extra columns pass through
                )
            except InvalidRequest as exc:
                raise DataError(
                    f"{source}, rows {rows}-{rows + len(frame) - 1}: {exc.message}",
                    hint=exc.hint,
                ) from exc
            out = predictor.run(predictor.feeds(rows_in))
            table = pa.Table.from_batches([batch])
            table = table.append_column("prediction", pa.array(out.labels.tolist()))
            if out.probabilities is not None:
                proba = np.asarray(out.probabilities, dtype=np.float64)
                for i, cls in enumerate(classes):
                    table = table.append_column(f"probability_{cls}", pa.array(proba[:, i]))
            if writer is None:
                parquet = output.name.lower().endswith((".parquet", ".pq"))
                writer = (
                    pq.ParquetWriter(tmp, table.schema)
                    if parquet
                    else pacsv.CSVWriter(tmp, table.schema)
                )
            writer.write_table(table)
            rows += rows_in.n
            chunks += 1
            if progress is not None:
                progress(rows, total)
        if writer is None:
            raise DataError(f"{source} has no rows", hint="give a file with a header and rows")
        writer.close()
        writer = None
        tmp.replace(output)
    except pa.ArrowInvalid as exc:
        raise DataError(f"cannot read {source}: {exc}") from exc
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return BatchResult(rows, chunks, output)
