"""``shipml serve`` and ``shipml predict``: the model server and batch scoring."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shipml.cli.output import project_config, state, stderr, stdout, told
from shipml.errors import ConfigError, ServingError

if TYPE_CHECKING:
    from shipml.config import ProjectConfig


def _config_or_none() -> ProjectConfig | None:
    """The project's configuration, or None outside a project. A project whose
    shipml.toml is wrong is an error (never silently unaudited)."""
    from shipml.config import find_root

    try:
        find_root(Path(state.project).resolve() if state.project else None)
    except ConfigError:
        return None
    return project_config()


def serve(
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or a package folder."),
    host: str | None = typer.Option(None, help="Interface (default \\[serving] host, 127.0.0.1)."),
    port: int | None = typer.Option(
        None, min=0, max=65535, help="Port (default \\[serving] port, 8080)."
    ),
    workers: int | None = typer.Option(None, min=1, help="Worker processes (default 1)."),
    grpc_port: int | None = typer.Option(
        None,
        min=0,
        max=65535,
        help="Also serve the V2 gRPC service on this port (default \\[serving] grpc_port; "
        "none). Needs the grpc extra: pip install 'shipml\\[grpc]'.",
    ),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
    name: str | None = typer.Option(
        None, help="Serve a package folder under this model name (default: the folder's name)."
    ),
    model_version: str | None = typer.Option(
        None, help="Serve a package folder as this version (default: 1)."
    ),
) -> None:
    """Serve a model over the Open Inference Protocol (V2), /invocations and /predict."""
    from shipml.project.serving import plan_serve
    from shipml.serving.server import run

    plan = plan_serve(
        _config_or_none(),
        ref,
        host=host,
        port=port,
        workers=workers,
        name=name,
        version=model_version,
        grpc_port=grpc_port,
    )
    spec, workers = plan.spec, plan.workers

    def announce() -> None:
        stderr.print(
            f"serving [bold]{spec.name}[/] version {spec.version} on "
            f"http://{plan.host}:{plan.port} ({workers} worker{'s' if workers > 1 else ''}); "
            f"V2 at /v2/models/{spec.name}/infer"
            + (f"; gRPC on {plan.host}:{spec.grpc_port}" if spec.grpc_port is not None else "")
        )

    run(
        spec,
        host=plan.host,
        port=plan.port,
        workers=workers,
        graceful_shutdown_s=plan.graceful_shutdown_s,
        access_log=access_log,
        ready=announce,
    )


def predict(
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or a package folder."),
    source: Path = typer.Argument(..., metavar="INPUT", help="CSV or Parquet file to score."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write (.csv or .parquet)."),
    chunk_rows: int = typer.Option(50_000, min=1, help="Rows per chunk (memory stays flat)."),
    engine: str | None = typer.Option(
        None, help="dask: score partitions on a Dask cluster; OUTPUT is then a folder of parts."
    ),
    scheduler: str | None = typer.Option(
        None, help="With --engine: the cluster's scheduler (tcp://HOST:8786); default local."
    ),
    workers: int = typer.Option(2, min=1, help="With --engine and no --scheduler: workers."),
    partition_mb: float | None = typer.Option(
        None, min=0.001, help="With --engine: MB of input per partition (default: ~4 a worker)."
    ),
    on_error: str = typer.Option(
        "fail",
        "--on-error",
        help="A row the model cannot take (unknown category, missing value): fail (stop and "
        "name the row and column), skip it, or flag it (an 'error' column, no prediction).",
    ),
) -> None:
    """Score a file in chunks: every input row, plus prediction and class probabilities.
    With --engine dask, partition by partition on a cluster's workers (docs/serving.md)."""
    from shipml.project.serving import load_predictor, resolve
    from shipml.serving.batch import predict_file

    config = _config_or_none()
    if engine is not None:
        where = (str(source), str(output), scheduler, workers, partition_mb, on_error)
        _predict_on_engine(resolve(config, ref), config, engine, *where)
        return
    predictor = load_predictor(config, ref)
    columns = [
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task("score", total=None)

        def advance(rows: int, total: int | None) -> None:
            bar.update(task, completed=rows, total=total)

        result = predict_file(
            predictor, source, output, chunk_rows=chunk_rows, progress=advance, on_error=on_error
        )
    refused = ""
    if result.refused:
        done = "skipped" if on_error == "skip" else "flagged in the 'error' column"
        refused = f"; {result.refused:,} row(s) {done}"
    told(output).print(
        f"scored {result.rows:,} rows in {result.chunks} chunk(s) → {result.output}{refused}"
    )


def _predict_on_engine(
    model: Any,
    config: Any,
    engine: str,
    source: str,
    output: str,
    scheduler: str | None,
    workers: int,
    partition_mb: float | None,
    on_error: str,
) -> None:
    from shipml.serving.distributed import ENGINES, predict_distributed

    if engine not in ENGINES:
        raise ServingError(f"unknown engine {engine!r}", hint=f"engines: {', '.join(ENGINES)}")
    audit = None
    if config is not None and config.audit.enabled:
        from shipml.audit import open_log

        def audit(record: dict[str, Any]) -> None:
            log = open_log(config)
            try:
                log.append(record)
            finally:
                log.close()

    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} partitions"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task("score", total=None)
        run = predict_distributed(
            Path(model.path),
            source,
            output,
            name=model.name,
            version=model.version,
            scheduler=scheduler,
            workers=workers,
            partition_mb=partition_mb,
            on_error=on_error,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            audit=audit,
        )
    stdout.print(
        f"scored {run.rows:,} rows in {len(run.parts)} partition(s) on {run.workers} "
        f"{engine} worker(s) in {run.seconds:.1f}s → {run.output}/ · batch {run.batch_id} · "
        f"input sha256 {run.input_sha256[:12]}… · output sha256 {run.output_sha256[:12]}…",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(predict)
