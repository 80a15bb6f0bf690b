"""``shipml monitor``: drift and quality of a model version in production."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipml.cli.output import project_config, stderr, stdout
from shipml.errors import DriftDetected, MonitorError

if TYPE_CHECKING:
    from shipml.project.monitor import MonitorRun


DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="A CSV or Parquet file of inputs instead of the audit log "
        "(with the label column, quality too).",
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Folder for monitor.json and monitor.html (default: \\[monitor] output).",
    ),
]
OnBreachOption = Annotated[
    str | None,
    typer.Option(
        "--on-breach",
        metavar="fail|retrain",
        help="On a breach: fail (exit 16) or retrain: snapshot the data again, run the "
        "pipeline as challenger, test it and promote it through the gates "
        "(default: \\[monitor] on_breach).",
    ),
]


def monitor(
    ref: str | None = typer.Argument(
        None,
        help="The model version: NAME@ALIAS, NAME/VERSION or a package folder "
        "(default: \\[monitor] ref, else MODEL@champion).",
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="Period of the audit log to read: 30m, 1h, 7d (default: \\[monitor] since, 24h).",
    ),
    last: int | None = typer.Option(
        None, "--last", min=1, help="Read the last N predicted rows instead of a period."
    ),
    window: str | None = typer.Option(
        None, "--window", help="Split into windows: a duration (10m, 1h) or a number of rows."
    ),
    data: DataOption = None,
    output: OutputOption = None,
    on_breach: OnBreachOption = None,
    no_export: bool = typer.Option(
        False, "--no-export", help="Do not attach the results to the model version."
    ),
) -> None:
    """Compare a model's recent inputs and predictions with its reference profile (drift
    per feature, with each test's statistic, threshold and verdict), measure its quality
    from feedback labels, write monitor.json and a self-contained monitor.html, and attach
    both to the model version. Exit code 16 when drift or quality breaches a threshold.

    Examples: `shipml monitor`, `shipml monitor penguins@champion --since 1h --window 10m`,
    `shipml monitor penguins/3 --data new_rows.parquet`, `shipml monitor --on-breach retrain`."""
    from shipml.project.monitor import run_monitor

    run = run_monitor(
        project_config(),
        ref,
        since=since,
        last=last,
        window=window,
        data=data,
        output=output,
        on_breach=on_breach,
        attach=not no_export,
        say=_say,
    )
    _render(run)
    if run.result.breached:
        raise _breach_error(run)


def _say(message: str) -> None:
    stderr.print(f"[dim]{escape(message)}[/]", soft_wrap=True)


def _drift_table(drift: Any) -> Table:
    table = Table("feature", "test", "statistic", "threshold", "drift", "PSI", "missing", "flags")
    rows = list(drift.features) + ([drift.prediction] if drift.prediction else [])
    for f in rows:
        name = "(prediction)" if f is drift.prediction else f.name
        t = f.test
        flags = ", ".join(f.flags)
        table.add_row(
            escape(name),
            t.method if t else "not judged",
            f"{t.statistic:.3g}" if t else "",
            f"{t.threshold:g}" if t else "",
            "[red]yes[/]" if f.drifted else "no",
            f"{f.psi.statistic:.3g}" if f.psi else "",
            f"{f.missing_share:.1%}",
            f"[red]{escape(flags)}[/]" if flags else "",
        )
    return table


def _render(run: MonitorRun) -> None:
    result = run.result
    stdout.print(
        f"[bold]{escape(run.target.ref)}[/] · {result.rows} rows · {escape(result.source)}"
    )
    if not result.rows:
        stdout.print("[yellow]no predictions in this period: nothing judged[/]")
    stdout.print(_drift_table(result.drift))
    q = result.quality
    if q["labelled"]:
        metrics = ", ".join(
            f"{v['metric']} {v['value']:.3f} (hold-out {v['holdout']:.3f})" for v in q["verdicts"]
        )
        stdout.print(f"quality  {q['labelled']} labelled: {metrics}")
    stdout.print(f"report   {escape(str(run.folder))}/monitor.json, monitor.html")
    if run.attached:
        where = run.attached[0].rsplit("/", 1)[0]
        stdout.print(f"attached to {escape(run.target.ref)}: {escape(where)}")
    if run.retraining is not None:
        r = run.retraining
        stdout.print(
            f"retrain  {r.decision}: challenger {escape(str(r.version))}, tests {r.tests or '-'}"
            f" · {escape(r.reason)}"
        )


def _breach_error(run: MonitorRun) -> MonitorError:
    result, drift = run.result, run.result.drift
    for line in result.breaches:
        stdout.print(f"[red]breach[/]   {escape(line)}")
    kind = (
        DriftDetected
        if drift.drifted or (drift.prediction and drift.prediction.drifted)
        else MonitorError
    )
    error = kind(
        f"{run.target.ref}: {len(result.breaches)} breach(es): {result.breaches[0]}",
        hint=f"see {run.folder}/monitor.html; `shipml monitor --on-breach retrain` retrains",
    )
    error.details = result.to_dict()
    return error


def register(app: typer.Typer) -> None:
    app.command()(monitor)
