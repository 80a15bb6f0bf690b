"""`shipml tune`: a search over the pipeline's parameters within a time budget."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from shipml.cli.output import project_config, stderr, stdout


class _Display:
    """One line per finished trial, and a live line: trials done, best so far, time left."""

    def __init__(self) -> None:
        self.state: Any = None
        self.shown: set[int] = set()
        self.live: Any = None

    def __rich__(self) -> str:
        s = self.state
        if s is None:
            return "[dim]starting the search…[/]"
        left = (
            "" if s.deadline is None else f" · {max(0.0, s.deadline - time.monotonic()):.0f}s left"
        )
        best = (
            f"best {s.metric} {s.best:.4g} (trial {s.best_trial})"
            if s.best is not None
            else "no best yet"
        )
        running = f"trial {s.running} running · " if s.running is not None else ""
        return (
            f"[bold]{escape(s.study)}[/] · {running}{s.done} done, {s.pruned} pruned, "
            f"{s.failed} stopped or failed · {escape(best)}{left}"
        )

    def update(self, state: Any) -> None:
        from rich.live import Live

        self.state = state
        if self.live is None:
            self.live = Live(self, console=stderr, refresh_per_second=2, transient=True)
            self.live.start()
        last = state.last
        if last is not None and last.number not in self.shown:
            self.shown.add(last.number)
            icon = {"complete": "[green]✓[/]", "pruned": "[cyan]✂[/]"}.get(last.state, "[red]✗[/]")
            value = f"{state.metric}={last.value:.4g}" if last.value is not None else last.state
            params = ", ".join(f"{k}={_short(v)}" for k, v in last.params.items())
            self.live.console.print(
                f"  {icon} trial {last.number:<3} {escape(value):<22} {last.seconds:5.1f}s  "
                f"[dim]{escape(params)}[/]",
                soft_wrap=True,
            )

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


JobsOption = Annotated[
    int,
    typer.Option(
        "--jobs", "-j", min=1, max=64, help="Trials at once: this many processes share the study."
    ),
]
WorkerOption = Annotated[
    bool,
    typer.Option(
        "--worker",
        help="Only run trials for a study that another `shipml tune` wraps up "
        "(Kubernetes worker Jobs, --jobs).",
    ),
]


def tune(
    budget: str | None = typer.Option(
        None,
        "--budget",
        "-b",
        help="Wall-clock budget: 90s, 10m, 1h30m (default: \\[tune] budget).",
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        "-n",
        min=0,
        help="At most this many trials in this session (0: no limit).",
    ),
    jobs: JobsOption = 1,
    study: str | None = typer.Option(
        None, "--study", help="The study's name (default: \\[tune] study, else the project name)."
    ),
    worker: WorkerOption = False,
    deadline: float | None = typer.Option(None, "--deadline", hidden=True),
    no_test: bool = typer.Option(
        False, "--no-test", help="Register the best trial as challenger without testing it."
    ),
) -> None:
    """Search the pipeline's parameters (\\[tune.space] in shipml.toml) with Optuna within a
    time budget. At every moment there is a best-so-far: when the budget ends, or on
    Ctrl-C or SIGTERM, the best trial is trained again (a reproducibility check),
    registered, tested with the \\[gates] suites and made the challenger. Each trial is a
    child MLflow run of the search's run; the study is kept next to the MLflow store, so
    running the command again resumes it.

    Examples: `shipml tune --budget 10m`, `shipml tune -b 1h --jobs 2`,
    `shipml tune --trials 20 --study deeper-trees`."""
    started = time.monotonic()
    from shipml.project.tune import tune as run_tune

    config = project_config()
    display = _Display()
    try:
        outcome = run_tune(
            config,
            budget=budget,
            trials=trials,
            jobs=jobs,
            study=study,
            worker=worker,
            deadline=deadline,
            started=started,
            progress=display.update,
            test=not no_test,
        )
    except KeyboardInterrupt:  # a Ctrl-C in the wrap-up, or a second one: say where it is
        display.stop()
        raise _interrupted() from None
    finally:
        display.stop()
    _render(outcome, worker)
    if not worker and outcome.tests is not None and not outcome.tests.passed:
        raise typer.Exit(1)


def _interrupted() -> typer.Exit:
    stderr.print(
        "interrupted: the best trial was not (or not fully) registered, tested and made "
        "challenger; the study keeps its trials, and `shipml tune` again resumes it and "
        "wraps up its best trial",
        soft_wrap=True,
    )
    return typer.Exit(130)


def _render(outcome: Any, worker: bool) -> None:
    search = outcome.search
    stopped = {"budget": "the budget ended", "trials": "the trials ran"}.get(
        search.stopped_by, search.stopped_by
    )
    stdout.print(
        f"[green]search[/] {search.study}: {search.session_trials} trial(s) in "
        f"{outcome.search_seconds:.1f}s ({stopped}); the study has {len(search.complete)} "
        f"complete of {len(search.trials)} · run {search.parent_run_id}"
    )
    if worker:
        return
    chosen = outcome.chosen
    if chosen is not None:
        params = ", ".join(f"{k}={_short(v)}" for k, v in chosen.params.items())
        stdout.print(f"best: trial {chosen.number}, {search.metric}={chosen.value:.4g} ({params})")
    if outcome.note:
        stdout.print(f"[yellow]note[/]: {escape(outcome.note)}")
    repro = outcome.reproducibility
    if repro:
        mark = (
            "[green]reproducible[/]" if repro["status"] == "passed" else "[red]NOT reproducible[/]"
        )
        stdout.print(
            f"trained again: {mark} (largest metric difference {repro['max_difference']:.2g}, "
            f"tolerance {repro['tolerance']:g})"
        )
    if outcome.tests is not None:
        s = outcome.tests.results["summary"]
        suites = ", ".join(outcome.tests.results["suites"])
        stdout.print(f"tested ({suites}): {s['passed']} passed, {s['failed'] + s['error']} failed")
    if outcome.version is not None:
        v = outcome.version
        stdout.print(
            f"model: {v.name}/{v.version} ({', '.join(v.aliases)}) · wrap-up "
            f"{outcome.wrapup_seconds:.1f}s"
        )


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
