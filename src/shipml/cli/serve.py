"""``shipml serve`` and ``shipml predict``: the model server and batch scoring."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shipml.cli.output import project_config, state, stderr, stdout
from shipml.errors import ConfigError

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
    )
    spec, workers = plan.spec, plan.workers
    stderr.print(
        f"serving [bold]{spec.name}[/] version {spec.version} on http://{plan.host}:{plan.port} "
        f"({workers} worker{'s' if workers > 1 else ''}); V2 at /v2/models/{spec.name}/infer"
    )
    run(
        spec,
        host=plan.host,
        port=plan.port,
        workers=workers,
        graceful_shutdown_s=plan.graceful_shutdown_s,
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
    from shipml.project.serving import load_predictor
    from shipml.serving.batch import predict_file

    predictor = load_predictor(_config_or_none(), ref)
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
