"""Project commands: init, run, demo, ui."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from shipml.cli.output import human_bytes, project_config, stderr, stdout
from shipml.errors import ConfigError, PipelineError, ProjectError


def _parse_params(values: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise PipelineError(
                f"--param expects NAME=VALUE, got {item!r}",
                hint="for example --param n_estimators=50",
            )
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
        except RecursionError:
            raise PipelineError(
                f"--param {key[:40]}: the value is nested too deeply ({len(raw):,} characters)",
                hint="pass a flat value, or put a large one in a file the pipeline reads",
            ) from None
    return params


def init(
    name: str = typer.Argument(..., help="Project name; also the folder created."),
    directory: Path | None = typer.Option(
        None, "--dir", help="Folder to create (default: ./NAME). Must be missing or empty."
    ),
    no_git: bool = typer.Option(False, "--no-git", help="Do not create a git repository."),
    model: str = typer.Option(
        "sklearn",
        "--model",
        help="The estimator in features.py: sklearn (a random forest), lightgbm, xgboost or "
        "catboost, each packaged as ONNX (install shipml\\[lightgbm] etc. first); its "
        "hyperparameters are pipeline parameters and shipml.toml gets their \\[tune.space].",
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Your table (CSV or Parquet): the project is made for it."
    ),
    target: str | None = typer.Option(None, "--target", help="With --data: the column to predict."),
    task: str | None = typer.Option(
        None,
        "--task",
        help="With --data: classification or regression (default: inferred from the target).",
    ),
) -> None:
    """Create a runnable project: shipml.toml, pipeline.py, data, tests and a notebook.
    Without --data it is the penguins example; with --data FILE --target COLUMN it is
    made for your table (features, ranges, tests and gates read from the data).

    Examples: `shipml init penguins`, `shipml init penguins --model lightgbm`,
    `shipml init cars --data cars.csv --target mpg --model xgboost`."""
    if data is None:
        if target or task:
            raise ProjectError("--target and --task need --data", hint="give --data FILE")
        from shipml.templates import create_project

        folder = create_project(directory or Path(name), name, git=not no_git, model=model)
        stdout.print(f"[green]created[/] project [bold]{name}[/] in {folder} (model: {model})")
        stdout.print(f"next: cd {folder} && shipml run")
        return
    if not target:
        raise ProjectError("--data needs --target COLUMN", hint="name the column to predict")
    from shipml.templates.table import create_table_project

    made = create_table_project(
        directory or Path(name), name, data, target, task=task, model=model, git=not no_git
    )
    stdout.print(f"[green]created[/] project [bold]{name}[/] in {made.folder} from {data.name}")
    stdout.print(f"task: {made.task} ({made.task_reason}); target {made.target!r}; model {model}")
    stdout.print(
        f"features: {len(made.numeric)} numeric, {len(made.categorical)} categorical"
        + "".join(f"; left out {c!r}: {why}" for c, why in made.dropped.items())
    )
    stdout.print(f"next: cd {made.folder} && shipml run --alias challenger")


def run(
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every step, ignoring the cache."),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Override a pipeline parameter: NAME=VALUE (repeatable)."
    ),
    alias: str | None = typer.Option(
        None, "--alias", help="Point this alias (e.g. challenger) at the registered version."
    ),
    no_register: bool = typer.Option(False, "--no-register", help="Do not register the model."),
    in_container: bool = typer.Option(
        False, "--in-container", help="Run it in the project's train image, the store mounted."
    ),
    engine: str | None = typer.Option(
        None, "--engine", help="With --in-container: podman or docker (default: the first found)."
    ),
) -> None:
    """Run the project's pipeline locally, cached, as one MLflow run."""
    if in_container:
        _run_in_container(no_cache, param, alias, no_register, engine)
        return
    from shipml.tracking.remote import remote_tracker_for
    from shipml.tracking.worker import TrackingWorker

    def notify(message: str) -> None:
        stderr.print(f"[yellow]{message}[/]", soft_wrap=True)

    # First of all: the worker imports MLflow (about 1.5 s) while this process loads
    # the project, its pipeline and the step cache.
    with TrackingWorker.start(notify) as worker:
        from shipml.pipeline.display import ConsoleReporter
        from shipml.project.run import run as run_project

        config = project_config()
        done = run_project(
            config,
            params=_parse_params(param),
            use_cache=not no_cache,
            reporter=ConsoleReporter(stderr),
            register=not no_register,
            alias=alias,
            tracker=remote_tracker_for(worker, config),
        )
    _show_run(done.result)
    from shipml.cli.testing import print_gates, show_promotion

    if done.refused is not None:  # a protected alias moves only through the gates
        print_gates(done.refused.details.get("gates", []))
        raise done.refused
    if done.promotion is not None:
        show_promotion(done.promotion)


def _show_run(result: Any) -> None:
    cached = len(result.cached)
    stdout.print(
        f"[green]finished[/] in {result.seconds:.2f}s · {len(result.executed)} ran, "
        f"{cached} cached · run {result.run_id}"
    )
    if result.metrics:
        stdout.print("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()))
    if result.model_version is not None:
        mv = result.model_version
        state = "registered" if result.model_created else "unchanged, still"
        aliases = f" ({', '.join(mv.aliases)})" if mv.aliases else ""
        stdout.print(f"model: {state} {mv.name}/{mv.version}{aliases}")


def _run_in_container(
    no_cache: bool, param: list[str], alias: str | None, no_register: bool, engine: str | None
) -> None:
    from rich.markup import escape

    from shipml.containers import run_in_container

    config = project_config()
    args = [a for p in param for a in ("--param", p)]
    args += ["--no-cache"] * no_cache + ["--no-register"] * no_register
    args += ["--alias", alias] if alias else []

    def log(line: str) -> None:
        stderr.print(f"[dim]{escape(line)}[/]", soft_wrap=True)

    raise typer.Exit(run_in_container(config, args, engine=engine, log=log))


def _demo_summary(result: Any) -> list[tuple[str, str]]:
    """The demo's (label, value) lines: every path and digest in full."""
    snap, pkg, run_ = result.snapshot, result.package, result.run
    mv = result.version or run_.model_version
    rows: list[tuple[str, str]] = []
    rows.append(("project", str(result.folder)))
    rows.append(
        (
            "dataset",
            f"{snap.ref}: {snap.rows} rows × {snap.columns} columns, sha256 {snap.digest}",
        )
    )
    rows.append(("run", f"{run_.run_id} ({len(run_.steps)} steps)"))
    rows.append(("metrics", ", ".join(f"{k}={v:.3f}" for k, v in run_.metrics.items())))
    if mv is not None:
        rows.append(("model", f"{mv.name}/{mv.version} @ {', '.join(mv.aliases) or '-'}"))
    files = ", ".join(
        f"{n} ({human_bytes((pkg.path / n).stat().st_size)})" for n in sorted(pkg.manifest["files"])
    )
    rows.append(("package", f"{pkg.path}"))
    rows.append(("", files))
    if result.tests is not None:
        s = result.tests.results["summary"]
        suites = ", ".join(result.tests.results["suites"])
        rows.append(
            (
                "tests",
                f"{s['passed']} passed, {s['failed']} failed ({suites}) → "
                f"{result.tests.output}/report.html",
            )
        )
    if result.promotion is not None:
        held = sum(g.holds for g in result.promotion.gates)
        rows.append(
            (
                "promotion",
                f"challenger → champion: {held} of {len(result.promotion.gates)} gates hold",
            )
        )
    rows.append(("store", result.store_uri))
    if result.request_id:
        first = (result.prediction.get("predictions") or [{}])[0]
        rows.append(
            (
                "prediction",
                f"request {result.request_id} → {first.get('label')} "
                "(served by the model server, audited)",
            )
        )
    return rows


def demo(
    directory: Path | None = typer.Option(
        None, "--dir", help="Folder for the demo project (default: a new ./shipml-demo\\[-N])."
    ),
) -> None:
    """The whole local journey: new project, data snapshot, tracked run, tests, promotion
    through the gates, one audited prediction."""
    from shipml.demo import fresh_folder, run_demo
    from shipml.pipeline.display import ConsoleReporter

    folder = directory or fresh_folder(Path.cwd())
    stdout.print(f"[bold]shipml demo[/] → {folder}")
    result = run_demo(folder, reporter=ConsoleReporter(stderr))
    rows = _demo_summary(result)
    for label, value in rows:  # no table: a long path or digest is never cut
        stdout.print(f"  {label:<11} {value}", markup=False)
    stdout.print(
        f"[green]done[/] in {result.seconds:.1f}s. Next: cd {result.folder} && "
        f"shipml audit explain {result.request_id} · shipml serve penguins@champion · shipml ui"
    )


def ui(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(5000, min=0, max=65535, help="Port of the MLflow UI."),
) -> None:
    """Start the MLflow UI on the project's store."""
    from shipml.tracking.server import redact, server_environ, ui_command

    config = project_config()
    cmd, secret = ui_command(
        config.tracking_uri, config.registry_uri, config.artifact_root, host, port
    )
    stdout.print(
        f"MLflow UI on http://{host}:{port} (store {redact(config.tracking_uri)}); Ctrl-C stops it"
    )
    env = server_environ(secret)
    from shipml.processes import run_in_foreground

    try:
        code = run_in_foreground(cmd, env=env)
    except OSError as exc:
        raise ConfigError(f"cannot start the MLflow UI: {exc}") from exc
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(run)
    app.command()(demo)
    app.command()(ui)
