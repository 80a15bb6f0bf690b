"""The ``shipml`` command line: thin commands over the library.

Each command parses its options, calls one library function and renders the
result. A ``ShipmlError`` becomes a short message and its exit code; the
traceback appears only with ``shipml --debug``.
"""

from __future__ import annotations

import inspect
import os
import sys

import typer
from rich.markup import escape

from shipml import __version__
from shipml.cli import (
    audit,
    ci,
    containers,
    dashboard,
    data,
    deploy,
    models,
    monitor,
    pipeline,
    project,
    report,
    rollout,
    serve,
    server,
    testing,
    tune,
)
from shipml.cli.output import state, stderr
from shipml.errors import ShipmlError

app = typer.Typer(
    name="shipml",
    help="Take an ML model from a notebook to production: pipelines, MLflow tracking, "
    "dataset snapshots, ONNX packages and a registry, on one machine or Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        print(f"shipml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
    project_dir: str | None = typer.Option(
        None, "--project", "-C", help="Run as if started in this project folder."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """shipml: the ML journey from notebook to production."""
    state.debug = debug or os.environ.get("SHIPML_DEBUG", "").lower() in ("1", "true", "yes")
    if project_dir:
        state.project = project_dir


project.register(app)
serve.register(app)
testing.register(app)
containers.register(app)
monitor.register(app)
dashboard.register(app)
tune.register(app)
report.register(app)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(audit.app, name="audit")
app.add_typer(rollout.app, name="rollout")
app.command("gateway")(rollout.gateway)
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(pipeline.step_app, name="step")
app.add_typer(deploy.app, name="deploy")
app.add_typer(ci.app, name="ci")
app.add_typer(server.app, name="server")


def _one_line_summaries(group: typer.Typer) -> None:
    """A command list shows each command's first paragraph. Typer's rich mode keeps the
    docstring's line breaks there, so a summary was cut mid-sentence at 80 columns; it
    is set here as one line, which the panel wraps to the terminal."""
    for info in group.registered_commands:
        text = info.help or inspect.getdoc(info.callback) or ""
        if info.short_help is None and text:
            info.short_help = " ".join(text.split("\n\n")[0].split())
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _one_line_summaries(sub.typer_instance)


_one_line_summaries(app)


def _print_traceback(exc: BaseException) -> None:
    """The traceback of ``exc`` and its causes, for ``--debug``, without passwords: the
    cause is often MLflow's own error, which quotes the URL it called, password included."""
    import traceback

    from shipml.tracking.store import scrub

    text = "".join(traceback.format_exception(exc))
    sys.stderr.write(scrub(text, os.environ.get("SHIPML_TRACKING_URI", "")))
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shipml`` console script; returns the exit code."""
    command = typer.main.get_command(app)
    try:
        # Standalone mode: click prints usage errors itself and exits with code 2.
        command.main(args=argv, prog_name="shipml", standalone_mode=True)
    except ShipmlError as exc:
        if state.debug:
            _print_traceback(exc)
        stderr.print(f"[bold red]{exc.kind}:[/] {escape(exc.message)}", soft_wrap=True)
        if exc.hint:
            stderr.print(f"[yellow]hint:[/] {escape(exc.hint)}", soft_wrap=True)
        return exc.exit_code
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        stderr.print(str(exc.code))
        return 1
    return 0


def run() -> None:
    sys.exit(main())


__all__ = ["app", "main", "run"]
