"""Where monitored rows come from: the audit log's prediction records (joined with the
feedback labels recorded for them), or a CSV/Parquet file of inputs scored by the model.

Both yield ``Batch``es — a few hundred or thousand rows at a time, with their time — so
the monitor counts them as they stream and never holds the window. The audit log keeps
each request body as it was sent (V2 tensors, ``instances``, ``dataframe_split``...); it
was validated by the server before it was logged, so reading it back only has to undo
the protocol's layout, not check it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from shipml.audit.codec import input_columns
from shipml.errors import DataError
from shipml.model import ModelPackage

BATCH_ROWS = 2000


@dataclass
class Batch:
    """Rows with their features (one list per feature), predictions and, where known,
    true labels (None for an unlabelled row)."""

    columns: dict[str, list[Any]]
    predictions: list[Any]
    labels: list[Any] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.predictions)


def body_columns(body: Any, names: list[str]) -> dict[str, list[Any]] | None:
    """A logged request body as one list per feature; None when it holds no features
    (the log kept only its digest: ``[audit] store_inputs = false``)."""
    if not isinstance(body, dict):
        return None
    recorded = input_columns(body, names)  # what the model received (shipml.audit.codec)
    if recorded is not None:
        return recorded
    if "dataframe_split" in body:
        split = body["dataframe_split"]
        cols, data = split.get("columns") or [], split.get("data") or []
        return {c: [row[i] for row in data] for i, c in enumerate(cols)}
    for key in ("instances", "dataframe_records", "inputs"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, dict):  # columnar
            return {k: list(v) if isinstance(v, list) else [v] for k, v in value.items()}
        if key == "inputs" and value and isinstance(value[0], dict) and "datatype" in value[0]:
            return _tensors(value, names)
        if value and isinstance(value[0], list):
            return {c: [row[i] for row in value] for i, c in enumerate(names)}
        if value and isinstance(value[0], dict):
            return {n: [row.get(n) for row in value] for n in names}
    return None


def _flat(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in data:
        out.extend(_flat(v) if isinstance(v, list) else [v])
    return out


def _tensors(tensors: list[dict[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    """V2 inputs: one tensor per feature, or one [rows, features] matrix."""
    by_name = {t.get("name"): t for t in tensors}
    if len(tensors) == 1 and tensors[0].get("name") not in names:
        matrix = np.asarray(_flat(tensors[0].get("data") or []), dtype=object)
        matrix = matrix.reshape(-1, len(names))
        return {n: matrix[:, i].tolist() for i, n in enumerate(names)}
    return {n: _flat(by_name[n].get("data") or []) for n in names if n in by_name}


def record_time(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["time"]))


def feedback_labels(log: Any, since: datetime | None) -> dict[str, Any]:
    """request id → true label from the log's feedback records (the first label given
    for an id counts), newest first down to ``since``."""
    labels: dict[str, Any] = {}
    for record in log.scan("feedback", newest_first=True):
        if since is not None and record_time(record) < since:
            break
        rid = record.get("request_id")
        if isinstance(rid, str):
            labels[rid] = record.get("label")  # older ones overwrite: the first given wins
    return labels


def _matches(record: dict[str, Any], model: str, version: str) -> bool:
    return record.get("model") == model and str(record.get("version")) == version


def cutoff_of_last(log: Any, model: str, version: str, last: int) -> datetime | None:
    """The time of the oldest of the ``last`` newest rows this model version predicted."""
    seen, when = 0, None
    for record in log.scan("prediction", newest_first=True):
        if not _matches(record, model, version):
            continue
        seen += len(_labels_of(record))
        when = record_time(record)
        if seen >= last:
            break
    return when


def _labels_of(record: dict[str, Any]) -> list[Any]:
    label = (record.get("output") or {}).get("label")
    return label if isinstance(label, list) else [label]


def audit_batches(
    log: Any,
    package: ModelPackage,
    model: str,
    version: str,
    *,
    since: datetime | None = None,
    last: int | None = None,
) -> Iterator[Batch]:
    """The predictions of ``model``/``version`` in the log, from ``since`` on (or the
    ``last`` rows), with their feedback labels, in batches."""
    names = package.signature.names
    if last is not None:
        since = max(filter(None, [since, cutoff_of_last(log, model, version, last)]), default=None)
    labels = feedback_labels(log, since)
    # Rows whose request body was not kept (``[audit] store_inputs = false``) count for
    # the predictions only, in batches of their own: as rows of missing values they made
    # every feature "100% missing" — a breach, and a retraining, on every pass.
    batches = {True: Batch({n: [] for n in names}, []), False: Batch({}, [])}
    for record in log.scan("prediction", newest_first=True):
        when = record_time(record)
        if since is not None and when < since:
            break  # any model's: the log is in time order, what follows is older still
        if not _matches(record, model, version):
            continue
        columns = body_columns(record.get("input"), names)
        batch = batches[columns is not None]
        _add(batch, record, columns, when, labels.get(str(record.get("request_id"))))
        if batch.rows >= BATCH_ROWS:
            yield batch
            batches[columns is not None] = Batch({n: [] for n in batch.columns}, [])
    yield from (b for b in batches.values() if b.rows)


def _add(
    batch: Batch,
    record: dict[str, Any],
    columns: dict[str, list[Any]] | None,
    when: datetime,
    truth: Any,
) -> None:
    """One record's rows: its features (a feature it lacks as missing values), its
    predictions, its time and its feedback label."""
    predicted = _labels_of(record)
    n = len(predicted)
    for name, column in batch.columns.items():
        values = (columns or {}).get(name)
        column.extend(values if values is not None and len(values) == n else [None] * n)
    batch.predictions.extend(predicted)
    batch.times.extend([when] * n)
    if isinstance(truth, list) and len(truth) == n:
        batch.labels.extend(truth)
    else:
        batch.labels.extend([truth] + [None] * (n - 1))


def file_batches(
    path: Path, package: ModelPackage, *, label: str | None = None, chunk_rows: int = 50_000
) -> Iterator[Batch]:
    """Rows of a CSV or Parquet file, scored by the package's model in chunks; the
    ``label`` column, when the file has it, gives true labels (quality)."""
    from shipml.model import model_input

    names = package.signature.names
    label = label if label is not None else package.label
    for frame in _chunks(path, chunk_rows):
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise DataError(
                f"{path} lacks the model's feature(s) {', '.join(missing[:5])}",
                hint=f"the model takes: {', '.join(names)}",
            )
        X = model_input(frame[names])
        predicted, _ = package.predict(X)
        truth = frame[label].tolist() if label and label in frame.columns else []
        yield Batch(
            {n: X[n].to_numpy() for n in names},  # type: ignore[misc]
            predicted.tolist(),
            truth,
            [],
        )


def _chunks(path: Path, chunk_rows: int) -> Iterator[Any]:
    import pandas as pd

    name = path.name.lower()
    if not path.is_file():
        raise DataError(f"no file at {path}", hint="give a CSV or Parquet file of inputs")
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            # pre_buffer=False: pages are read as the batches need them (the default
            # reads the file ahead, which holds most of it in memory).
            rows = pq.ParquetFile(path, pre_buffer=False)
            for part in rows.iter_batches(batch_size=chunk_rows, use_threads=False):
                yield part.to_pandas()
        elif name.endswith((".csv", ".csv.gz")):
            yield from pd.read_csv(path, chunksize=chunk_rows)
        else:
            raise DataError(
                f"cannot tell the format of {path.name!r} from its name",
                hint="give a file ending in .csv, .csv.gz, .parquet or .pq",
            )
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read {path}: {type(exc).__name__}: {str(exc)[:200]}",
            hint="give a readable CSV or Parquet file",
        ) from exc


def since_time(period: timedelta | None) -> datetime | None:
    return datetime.now(UTC) - period if period is not None else None
