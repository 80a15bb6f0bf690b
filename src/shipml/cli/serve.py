"""``shipml serve`` and ``shipml predict``: the model server and batch scoring."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shipml.cli.output import project_config, state, stderr, stdout
from shipml.errors import ConfigError


def _config_or_none() -> object | None:
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
    from dataclasses import replace

    from shipml.serving.server import resolve_spec, run

    config = _config_or_none()
    spec = resolve_spec(ref, config)
    serving = getattr(config, "serving", None)
    if name or model_version:  # a serve image names its baked-in package this way
        spec = replace(spec, name=name or spec.name, version=model_version or spec.version)
    grpc_port = grpc_port if grpc_port is not None else getattr(serving, "grpc_port", None)
    if grpc_port is not None:  # like the HTTP port, a setting of this command only
        spec = replace(spec, grpc_port=grpc_port)
    host = host or (serving.host if serving else "127.0.0.1")
    port = port if port is not None else (serving.port if serving else 8080)
    workers = workers or (serving.workers if serving else 1)
    grace = serving.graceful_shutdown_s if serving else 10.0
    stderr.print(
        f"serving [bold]{spec.name}[/] version {spec.version} on http://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''}); V2 at /v2/models/{spec.name}/infer"
        + (f"; gRPC on {host}:{spec.grpc_port}" if spec.grpc_port is not None else "")
    )
    run(
        spec,
        host=host,
        port=port,
        workers=workers,
        graceful_shutdown_s=grace,
        access_log=access_log,
    )


def predict(
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or a package folder."),
    source: Path = typer.Argument(..., metavar="INPUT", help="CSV or Parquet file to score."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write (.csv or .parquet)."),
    chunk_rows: int = typer.Option(50_000, min=1, help="Rows per chunk (memory stays flat)."),
    on_error: str = typer.Option(
        "fail",
        "--on-error",
        help="A row the model cannot take (unknown category, missing value): fail (stop and "
        "name the row and column), skip it, or flag it (an 'error' column, no prediction).",
    ),
) -> None:
    """Score a file in chunks: every input row, plus prediction and class probabilities."""
    from shipml.serving.batch import predict_file
    from shipml.serving.predictor import Predictor
    from shipml.serving.server import resolve_spec

    spec = resolve_spec(ref, _config_or_none())
    predictor = Predictor.load(
        Path(spec.package), name=spec.name, version=spec.version, trusted_types=spec.trusted_types
    )
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
    stdout.print(
        f"scored {result.rows:,} rows in {result.chunks} chunk(s) → {result.output}{refused}"
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(predict)
