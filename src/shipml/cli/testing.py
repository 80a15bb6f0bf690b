"""Testing commands: test, promote, score."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipml.cli.output import project_config, stdout
from shipml.errors import GateFailed

if TYPE_CHECKING:
    from shipml.project.promotion import Promotion


def test(
    ref: str | None = typer.Argument(
        None,
        help="Model to test: NAME@ALIAS, NAME/VERSION or a package folder "
        "(default: \\[tests] ref, else the newest registered version).",
    ),
    against: str | None = typer.Option(
        None,
        "--against",
        metavar="URL",
        help="A running model server for the api and browser suites "
        "(default: one is started for the tests).",
    ),
    suite: str | None = typer.Option(
        None,
        "--suite",
        "-s",
        metavar="SUITES",
        help="Comma-separated: unit, data, model, api, browser (default: \\[tests] suites).",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder for junit.xml, report.html, results.json "
        "(default: \\[tests] output, results/).",
    ),
    no_export: bool = typer.Option(
        False, "--no-export", help="Do not attach the results to the model version."
    ),
) -> None:
    """Run the test suites on a model (pytest + shipml's checks); write JUnit XML, an HTML
    report and JSON results, and attach them to the model version. Exit code 1 when a
    test fails.

    Examples: `shipml test`, `shipml test penguins@challenger --suite data,model`,
    `shipml test penguins/3 --against http://localhost:8080 --suite api`."""
    from shipml.testing.runner import run_tests

    config = project_config()
    result = run_tests(
        config, ref, against=against, suites=suite, output=output, attach=not no_export
    )
    table = Table("suite", "status", "passed", "failed", "skipped")
    for name, s in result.results["suites"].items():
        color = "green" if s["status"] == "passed" else "red" if s["status"] == "failed" else ""
        status = f"[{color}]{s['status']}[/]" if color else s["status"]
        failed = str(s["failed"] + s["error"])
        table.add_row(name, status, str(s["passed"]), failed, str(s["skipped"]))
    stdout.print(f"[bold]{escape(result.ref)}[/]")
    stdout.print(table)
    stdout.print(f"results  {result.output}/junit.xml, report.html, results.json")
    if result.attached:
        stdout.print(f"attached to {escape(result.ref)}: {result.attached[0].rsplit('/', 1)[0]}")
    if not result.passed:
        raise typer.Exit(1)


def promote(
    ref: str = typer.Argument(..., help="The version to promote, e.g. NAME@challenger."),
    alias: str = typer.Option("champion", "--alias", help="The alias to move."),
    force: bool = typer.Option(False, "--force", help="Promote even if gates do not hold."),
    reason: str = typer.Option("", "--reason", help="Why (required with --force; recorded)."),
) -> None:
    """Make a tested version the champion if every gate in \\[gates] holds; otherwise show
    the unmet gates and exit non-zero. --force --reason overrides, recorded in the audit
    log and on the version."""
    from shipml.project.promotion import promote as do_promote

    try:
        result = do_promote(project_config(), ref, alias=alias, force=force, reason=reason)
    except GateFailed as exc:
        print_gates(exc.details.get("gates", []))
        raise
    show_promotion(result)


def show_promotion(result: Promotion) -> None:
    """The gate table and what moved (promote, run --alias and models alias share it)."""
    print_gates(result.gates)
    if not result.moved:
        stdout.print(
            f"{escape(result.model)}@{result.alias} already is version "
            f"{result.version}: nothing to do"
        )
        return
    moved = f"{result.model}@{result.alias} → version {result.version}"
    was = f" (was version {result.previous})" if result.previous else ""
    if result.forced:
        stdout.print(
            f"[yellow]forced[/]: {escape(moved)}{was}; reason recorded: {escape(result.reason)}"
        )
    else:
        stdout.print(f"[green]promoted[/]: {escape(moved)}{was}")


def print_gates(gates: list[Any]) -> None:
    table = Table("gate", "holds", "value", "needs", "note")
    for g in gates:
        mark = "[green]yes[/]" if g.holds else "[bold red]NO[/]"
        table.add_row(escape(g.name), mark, escape(g.value), escape(g.bound), escape(g.note))
    stdout.print(table)


def score(
    results: Path | None = typer.Option(
        None, "--results", help="results.json to score (default: \\[tests] output)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the score as JSON."),
) -> None:
    """The ML Test Score (Breck et al., 2017) of the project: which of the 28 tests are
    automated (1 point) or manual with documented results (0.5), per section, and the
    final score (the minimum over the four sections)."""
    import json

    from shipml.testing.score import SECTIONS, compute, load_results

    config = project_config()
    loaded = load_results(config, results)
    result = compute(config, loaded)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    table = Table("test", "", "points", "evidence")
    for t in result.tests:
        mark = {"automated": "[green]automated[/]", "manual": "[yellow]manual[/]"}.get(
            t.how, "[red]missing[/]"
        )
        table.add_row(
            f"{t.id} {escape(t.title)}", mark, f"{t.points:g}", escape("; ".join(t.evidence)[:90])
        )
    model = (loaded.get("model") or {}).get("ref", "?")
    suites = ", ".join(loaded.get("suites", {}))
    when = loaded.get("created", "?")
    stdout.print(f"from the results of {escape(str(model))} (suites {suites}) at {when}")
    stdout.print(table)
    sections = ", ".join(f"{SECTIONS[k]} {v:g}" for k, v in result.sections.items())
    stdout.print(f"sections: {sections}")
    stdout.print(
        f"[bold]ML Test Score: {result.final:g}[/] (the minimum over the sections); "
        f"{result.automated} of 28 tests automated, {len(result.missing)} missing"
    )


def register(app: typer.Typer) -> None:
    app.command("test")(test)
    app.command("promote")(promote)
    app.command("score")(score)
