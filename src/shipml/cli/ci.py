"""``shipml ci``: generated CI workflows, and the same stages run locally."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from shipml.cli.output import project_config, stderr, stdout
from shipml.errors import CIError

app = typer.Typer(help="CI/CD: workflow files, and their stages run locally.", no_args_is_help=True)


def _emit(stage: str, line: str) -> None:
    stderr.print(f"[dim]{stage:>14} │[/] {escape(line)}", soft_wrap=True)


@app.command("init")
def init(
    provider: str | None = typer.Option(
        None, "--provider", help="github or gitlab (default \\[ci] provider)."
    ),
    force: bool = typer.Option(False, help="Replace a workflow file shipml did not write."),
) -> None:
    """Write the CI workflow: lint and unit tests → pipeline run → model tests → images →
    staging with the challenger in shadow → analysis → promotion (manual approval)."""
    from shipml.cicd import stages, write
    from shipml.cicd.install import WHEEL_DIR, source

    config = project_config()
    path = write(config, provider or config.ci.provider, force=force)
    stdout.print(f"[green]wrote[/] {path.relative_to(config.root)}")
    found = source(config)
    stdout.print(f"  install: {escape(found.line)}", soft_wrap=True)
    if found.kind == "wheel":
        stdout.print(f"  commit the wheel it installs: {WHEEL_DIR}/ (git add {WHEEL_DIR})")
    for stage in stages(config, config.ci.target):
        note = " (manual approval)" if stage.manual else ""
        stdout.print(f"  {stage.name}{note}: {escape('; '.join(stage.shell()))}", soft_wrap=True)


@app.command("run")
def run(
    stage: list[str] = typer.Option([], "--stage", help="Run only this stage (repeatable)."),
    approve: bool = typer.Option(False, help="Also run the stages that need approval."),
    install: bool = typer.Option(
        True,
        help="First run the workflows' install line in .shipml/ci/venv and run the stages "
        "with the shipml it installs (--no-install: with this one).",
    ),
) -> None:
    """Run the CI stages here, in order (deploying with \\[ci] local_target); stops at the
    first failure."""
    from shipml.cicd import run_stages

    result = run_stages(
        project_config(), only=stage or None, approve=approve, emit=_emit, install=install
    )
    table = Table("stage", "result", "seconds", "note", box=None)
    colours = {"passed": "green", "failed": "red", "skipped": "yellow", "not run": "dim"}
    for res in result.results:
        table.add_row(
            res.name,
            f"[{colours[res.status]}]{res.status}[/]",
            f"{res.seconds:.1f}" if res.status in ("passed", "failed") else "",
            escape(res.reason),
        )
    stdout.print(table)
    failed = result.failed
    if failed is not None:
        raise CIError(
            f"stage '{failed.name}' failed: `{failed.command}` exited with "
            f"{failed.exit_code}: {failed.reason}",
            hint="fix it and run `shipml ci run` again (or --stage "
            f"{failed.name} to run that stage alone)",
        )


@app.command("check")
def check() -> None:
    """Lint (ruff) and the project's unit tests (pytest on tests/): the first CI stage."""
    from shipml.cicd import check as run_check

    ran = run_check(project_config(), emit=_emit)
    stdout.print(f"[green]passed[/]: {', '.join(ran)}")
