"""`shipml compare` and `shipml report`: runs and models side by side, and model cards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from shipml.cli.output import project_config, stdout
from shipml.errors import RegistryError


def compare(
    refs: list[str] = typer.Argument(
        ..., help="Two or more run ids or model references (NAME@ALIAS, NAME/VERSION)."
    ),
    all_params: bool = typer.Option(
        False, "--all", help="Show every parameter, not only those that differ."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    html_file: Path | None = typer.Option(
        None, "--html", help="Also write a self-contained HTML page."
    ),
    summary: bool = typer.Option(
        False,
        "--summary",
        help="Append a markdown table to the CI job summary ($GITHUB_STEP_SUMMARY).",
    ),
    skip_missing: bool = typer.Option(
        False,
        "--skip-missing",
        help="Leave out references that do not resolve (a first run has no champion).",
    ),
) -> None:
    """Compare runs or model versions: parameters, metrics with deltas, dataset digests,
    code commits and their diff, test results and slices; with --html, ROC and
    precision-recall curves, confusion matrices and calibration of the held-out rows.

    Examples: `shipml compare penguins@champion penguins@challenger`,
    `shipml compare RUN_A RUN_B --json`, `shipml compare penguins/1 penguins/2 --html cmp.html`."""
    from shipml.report.compare import check_subjects, markdown, to_html, to_json
    from shipml.report.compare import compare as do_compare
    from shipml.report.model_card import job_summary, write_atomic

    check_subjects(refs)
    config = project_config()
    if skip_missing:
        refs = _resolvable(config, refs)
        if len(refs) < 2:
            stdout.print("nothing to compare: fewer than two of the references resolve")
            return
    result = do_compare(config, refs, predictions=html_file is not None)
    if html_file is not None:
        write_atomic(html_file, to_html(result))
    target = job_summary() if summary else None
    if target is not None:
        with target.open("a", encoding="utf-8") as fh:
            fh.write("## Comparison\n\n" + markdown(result) + "\n")
    if as_json:
        print(to_json(result))
        return
    _render(result, all_params)
    if html_file is not None:
        stdout.print(f"html: {escape(str(html_file))}")


def _render(result: Any, all_params: bool) -> None:
    from shipml.report.compare import deltas

    heads = [escape(e.label) for e in result.entries]
    params = result.all_params if all_params else result.params
    table = Table("parameter", *heads, title="parameters" + ("" if all_params else " that differ"))
    for k, vs in params.items():
        table.add_row(escape(k), *[escape(str(v)) for v in vs])
    stdout.print(table if params else "parameters: the same")
    table = Table("metric", *heads, title="metrics (delta against the first)")
    for k, ms in result.metrics.items():
        ds = deltas(ms)
        cells = ["–" if v is None else f"{v:.4g}" for v in ms[:1]]
        cells += [
            "–" if v is None else f"{v:.4g}" + (f" ({d:+.4g})" if d else "")
            for v, d in zip(ms[1:], ds[1:], strict=True)
        ]
        table.add_row(escape(k), *cells)
    stdout.print(table)
    for k, vs in result.datasets.items():
        shown = " · ".join((v or "–")[:12] for v in vs)
        stdout.print(f"dataset {escape(k)}: {escape(shown)}")
    stdout.print("data: " + ("the same" if result.same_data else "[yellow]different[/]"))
    commits = " · ".join((e.commit or "–")[:12] for e in result.entries)
    changed = len([ln for ln in result.code_diff.splitlines() if ln.startswith("diff --git")])
    # a run's commit tag is text anyone with the tracking server can set: never markup
    stdout.print(
        f"commits: {escape(commits)}" + (f" ({changed} file(s) differ)" if changed else "")
    )


def _resolvable(config: object, refs: list[str]) -> list[str]:
    from shipml.report.compare import entry

    kept = []
    for ref in refs:
        try:
            entry(config, ref, predictions=False)  # type: ignore[arg-type]
        except RegistryError as exc:
            stdout.print(f"[yellow]left out[/] {escape(ref)}: {escape(exc.message)}")
            continue
        kept.append(ref)
    return kept


def report(
    ref: str = typer.Argument(..., help="The model version: NAME@ALIAS or NAME/VERSION."),
    output: Path = typer.Option(
        Path("report.html"), "--output", "-o", help="The HTML file to write."
    ),
    no_attach: bool = typer.Option(
        False, "--no-attach", help="Do not attach it to the model version."
    ),
    summary: bool = typer.Option(
        False,
        "--summary",
        help="Append a markdown summary to the CI job summary ($GITHUB_STEP_SUMMARY).",
    ),
) -> None:
    """Write a model card: one self-contained HTML file (viewable offline, charts inline)
    with the model's purpose, data, parameters, metrics with confidence intervals, slices,
    tests and gates, lineage, tuning curve and known limits; attached to the version.

    Example: `shipml report penguins@champion -o card.html`."""
    from shipml.report.model_card import job_summary, write_report

    config = project_config()
    card = write_report(
        config, ref, output, attach=not no_attach, summary=job_summary() if summary else None
    )
    stdout.print(f"[green]model card[/] of {escape(card.ref)} → {escape(str(output))}")
    if card.attached:
        stdout.print(f"attached to {escape(card.ref)}: {escape(card.attached)}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
    app.command("report")(report)
