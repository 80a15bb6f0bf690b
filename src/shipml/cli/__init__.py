"""The ``shipml`` command line: thin commands over the library.

Each command parses its options, calls one library function and renders the
result. A ``ShipmlError`` becomes a short message and its exit code; the
traceback appears only with ``shipml --debug``.
"""

from __future__ import annotations

import os
import sys

import click
import typer

from shipml import __version__
from shipml.cli import data, models, project
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
    state.debug = debug or bool(os.environ.get("SHIPML_DEBUG"))
    if project_dir:
        state.project = project_dir


project.register(app)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shipml`` console script; returns the exit code."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="shipml", standalone_mode=False)
    except ShipmlError as exc:
        if state.debug:
            import traceback

            traceback.print_exc()
        stderr.print(f"[bold red]{exc.kind}:[/] {exc.message}", highlight=False)
        if exc.hint:
            stderr.print(f"[yellow]hint:[/] {exc.hint}", highlight=False)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        stderr.print("aborted")
        return 130
    return 0


def run() -> None:
    sys.exit(main())


__all__ = ["app", "main", "run"]
