"""Batch scoring on a Dask cluster (``shipml predict --engine dask``): a CSV or Parquet
dataset scored partition by partition on the cluster's workers.

- Partitions: CSV files are cut in byte ranges at line ends (``fsspec.utils.read_block``,
  as ``dask.dataframe.read_csv`` does; a quoted field holding a line break is not
  supported); Parquet files by row groups. ``partition_mb`` sets their size.
- One model per worker: a worker plugin receives the package's files once and loads one
  ONNX session (``Predictor``) that every partition on that worker uses.
- Each partition is scored by the same code as a local ``shipml predict``
  (``shipml.serving.batch.predict_file``) and written as soon as it is done, as
  ``OUTPUT/part-NNNNN.parquet`` (or ``.csv``): output partitions stream out, memory stays
  bounded by a partition per worker.
- ``OUTPUT/_shipml.json`` is written last (rows, parts and their sha256, the input's
  sha256, the model); a local OUTPUT appears whole, by a rename of the folder.
- Audit: one record per batch (kind ``batch``), with the input's and the output's
  digests, not one per row.

Without a scheduler address a local cluster of ``workers`` processes (one thread each)
is started and stopped; with one (``tcp://HOST:8786``) the workers must reach the input
and output paths (a shared folder or ``s3://``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shipml.errors import DataError, ServingError
from shipml.serving.partitions import (
    Part,
    _fs,
    _read_part,
    auto_partition_mb,
    check_input,
    partitions,
)

try:  # the engine is an extra (shipml[dask]); without it, _client says what to install
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover
    WorkerPlugin = object  # type: ignore[misc,assignment]

MANIFEST = "_shipml.json"
ENGINES = ("dask",)
_PREDICTORS: dict[str, Any] = {}  # in a worker process: the model, loaded once


@dataclass
class BatchRun:
    batch_id: str
    rows: int
    parts: list[dict[str, Any]]
    output: str
    input_sha256: str
    output_sha256: str
    engine: str
    workers: int
    seconds: float
    model: dict[str, str] = field(default_factory=dict)


class ModelPlugin(WorkerPlugin):
    """A Dask worker plugin: the package's files, loaded once per worker."""

    def __init__(self, key: str, files: dict[str, bytes], name: str, version: str) -> None:
        self.key, self.files, self.name, self.version = key, files, name, version

    def setup(self, worker: Any = None) -> None:
        from shipml.serving.predictor import Predictor

        folder = self._folder = Path(tempfile.mkdtemp(prefix="shipml-model-"))
        for rel, data in self.files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        _PREDICTORS[self.key] = Predictor.load(folder, name=self.name, version=self.version)

    def teardown(self, worker: Any = None) -> None:
        """Forget the model and remove its files (the package reads some of them lazily,
        so they stay while the worker serves)."""
        _PREDICTORS.pop(self.key, None)
        folder = getattr(self, "_folder", None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def score_part(
    part: Part, key: str, staging: str, suffix: str, chunk_rows: int, on_error: str = "fail"
) -> dict[str, Any]:
    """On a worker: score one partition with the worker's model; write it to ``staging``."""
    from shipml.serving.batch import predict_file

    predictor = _PREDICTORS.get(key)
    if predictor is None:
        raise ServingError("the worker has no model loaded (its plugin did not run)")
    work = Path(tempfile.mkdtemp(prefix="shipml-part-"))
    try:
        source = work / f"in.{part.kind}"
        if not _read_part(part, source):
            return {"index": part.index, "rows": 0, "file": None, "sha256": None}
        name = f"part-{part.index:05d}{suffix}"
        fs, base = _fs(staging)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        # A local folder is written in place; a bucket gets the part once it is whole.
        out = Path(base) / name if "file" in protocols else work / f"out{suffix}"
        try:
            result = predict_file(predictor, source, out, chunk_rows=chunk_rows, on_error=on_error)
        except DataError as exc:
            where = (
                f"bytes {part.offset}+" if part.kind == "csv" else f"row groups {part.row_groups}"
            )
            message = exc.message.replace(str(source), part.uri)  # not the worker's copy
            raise DataError(f"partition {part.index} ({where}): {message}", hint=exc.hint) from exc
        data = out.read_bytes()
        if out.parent == work:
            fs.pipe_file(f"{base}/{name}", data)
        return {
            "index": part.index,
            "rows": result.rows,
            "refused": result.refused,
            "file": name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "worker": _worker_address(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # not on a worker (called directly)
        return ""


def _sha256(uri: str, box: dict[str, str]) -> None:
    fs, path = _fs(uri)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    box["sha256"] = digest.hexdigest()


def _client(scheduler: str | None, workers: int, timeout: float) -> tuple[Any, Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ServingError(
            "the dask engine needs dask.distributed", hint="pip install 'shipml[dask]'"
        ) from exc
    if scheduler:
        try:
            return Client(scheduler, timeout=timeout), None
        except OSError as exc:
            raise ServingError(
                f"no Dask scheduler answers at {scheduler}: {exc}",
                hint="give its address (tcp://HOST:8786), or leave it out for a local cluster",
            ) from exc
    # Its workers' start and stop chatter (a nanny killing a slow worker at the end) is
    # not the command's output.
    for name in ("distributed", "distributed.nanny", "distributed.scheduler"):
        logging.getLogger(name).setLevel(logging.ERROR)
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster), cluster


def onnx_sha256(package: Path) -> str:
    from shipml.model import ModelPackage

    return ModelPackage.load(package, verify=False).onnx_sha256 or ""


def _package_files(package: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(package)): p.read_bytes()
        for p in sorted(package.rglob("*"))
        if p.is_file()
    }


def _score_all(
    client: Any,
    plugin: ModelPlugin,
    source: str,
    partition_mb: float | None,
    job: tuple[str, str, int, str],
    progress: Callable[[int, int], None] | None,
) -> tuple[list[dict[str, Any]], int]:
    """Every partition scored on the cluster; (their results, the number of workers)."""
    from distributed import as_completed, wait

    staging, suffix, chunk_rows, on_error = job
    client.register_plugin(plugin, name=f"shipml-{plugin.key}")
    n_workers = len(client.scheduler_info().get("workers", {}))
    parts = partitions(source, partition_mb or auto_partition_mb(source, n_workers))
    futures = [
        client.submit(score_part, p, plugin.key, staging, suffix, chunk_rows, on_error, pure=False)
        for p in parts
    ]
    done: list[dict[str, Any]] = []
    try:
        for future in as_completed(futures):
            done.append(future.result())
            if progress is not None:
                progress(len(done), len(parts))
    except BaseException:
        # Nothing may still be writing parts when the caller removes them: a task that
        # runs goes on even when cancelled, so every task is let finish.
        wait(futures)
        raise
    return done, n_workers


def audit_record(run: BatchRun, source: str) -> dict[str, Any]:
    """The one audit record of a batch."""
    return {
        "kind": "batch",
        "request_id": run.batch_id,
        "model": run.model["name"],
        "version": run.model["version"],
        "onnx_sha256": run.model["onnx_sha256"],
        "engine": run.engine,
        "workers": run.workers,
        "rows": run.rows,
        "partitions": len(run.parts),
        "input": {"uri": source, "sha256": run.input_sha256},
        "output": {"uri": run.output, "sha256": run.output_sha256},
    }


def predict_distributed(
    package: Path,
    source: str,
    output: str,
    *,
    name: str,
    version: str,
    scheduler: str | None = None,
    workers: int = 2,
    partition_mb: float | None = None,
    chunk_rows: int = 50_000,
    on_error: str = "fail",
    connect_timeout: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
    audit: Callable[[dict[str, Any]], None] | None = None,
) -> BatchRun:
    """Score ``source`` into the folder ``output`` on a Dask cluster (a local one of
    ``workers`` processes unless ``scheduler`` is given); ``progress(parts done, parts)``
    as partitions finish; ``audit`` gets the batch's one record. ``on_error`` is the local
    scoring's (fail, skip or flag a row the model cannot take)."""
    started = time.perf_counter()
    check_input(source)
    batch_id = uuid.uuid4().hex
    fs, out_path, staging, local = _output(output, batch_id)
    staged = _fs(staging)[1]
    suffix = ".parquet" if output.lower().rstrip("/").endswith((".parquet", ".pq")) else ".csv"
    digest: dict[str, str] = {}
    hasher = threading.Thread(target=_sha256, args=(source, digest), daemon=True)
    hasher.start()
    files = _package_files(package)
    key = hashlib.sha256(b"".join(files.get(n, b"") for n in sorted(files))).hexdigest()[:16]
    client, cluster = _client(scheduler, workers, connect_timeout)
    fs.makedirs(staged, exist_ok=True)
    try:
        written, n_workers = _score_on(
            client,
            cluster,
            ModelPlugin(key, files, name, version),
            source,
            partition_mb,
            (staging, suffix, chunk_rows, on_error),
            progress,
        )
    except BaseException:
        if local:
            fs.rm(staged, recursive=True)
        raise
    hasher.join()
    out_digest = hashlib.sha256("".join(d["sha256"] for d in written).encode()).hexdigest()
    model = {"name": name, "version": version, "onnx_sha256": onnx_sha256(package)}
    rows = sum(d["rows"] for d in written)
    run = BatchRun(
        batch_id, rows, written, output, digest["sha256"], out_digest, "dask", n_workers, 0, model
    )
    _publish(fs, run, staged, out_path, local)
    run.seconds = time.perf_counter() - started
    if audit is not None:
        audit(audit_record(run, source))
    return run


def _score_on(
    client: Any,
    cluster: Any,
    plugin: ModelPlugin,
    source: str,
    partition_mb: float | None,
    job: tuple[str, str, int, str],
    progress: Callable[[int, int], None] | None,
) -> tuple[list[dict[str, Any]], int]:
    """The written parts in order and the number of workers; the client (and a local
    cluster) closed after."""
    try:
        done, n_workers = _score_all(client, plugin, source, partition_mb, job, progress)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    written = sorted((d for d in done if d["file"]), key=lambda d: d["index"])
    if not written:
        raise DataError(f"{source} has no rows", hint="give a file with a header and rows")
    return written, n_workers


def _output(output: str, batch_id: str) -> tuple[Any, str, str, bool]:
    """The output's filesystem and path, where the parts are written first, and whether it
    is local (a local folder is written aside and renamed into place; a bucket has no
    rename). An existing output must be a shipml batch's."""
    fs, out_path = _fs(output)
    if fs.exists(out_path) and not fs.exists(f"{out_path}/{MANIFEST}"):
        raise DataError(
            f"{output} exists and is not the output of a shipml batch",
            hint="give a new path (a folder of parts is written)",
        )
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    local = "file" in protocols
    staging = f"{output.rstrip('/')}.partial-{batch_id[:8]}" if local else output.rstrip("/")
    return fs, out_path, staging, local


def _publish(fs: Any, run: BatchRun, staged: str, out_path: str, local: bool) -> None:
    """The manifest written last; a local output then replaces the previous one whole."""
    fs.pipe_file(f"{staged}/{MANIFEST}", json.dumps(asdict(run), indent=2).encode())
    if local:
        if fs.exists(out_path):
            fs.rm(out_path, recursive=True)
        Path(staged).rename(out_path)
