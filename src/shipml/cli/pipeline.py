"""``shipml pipeline compile`` and ``shipml step run``: the pipeline on Kubeflow, one step
per task, the steps' data passing through the artifact store."""

from __future__ import annotations

from pathlib import Path

import typer

from shipml.cli.output import project_config, stderr, stdout
from shipml.cli.project import _parse_params
from shipml.errors import PipelineError

app = typer.Typer(help="Compile the pipeline for an orchestrator.", no_args_is_help=True)
step_app = typer.Typer(help="Run one step of the pipeline on its own.", no_args_is_help=True)


@app.command("compile")
def compile_(
    target: str = typer.Option("kubeflow", help="The orchestrator (kubeflow)."),
    output: Path = typer.Option(Path("pipeline.yaml"), "--output", "-o", help="Where to write."),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE (repeatable)."),
    image: str | None = typer.Option(
        None, help="The train image (default \\[kubeflow] image, or <registry>/<project>-train)."
    ),
    submit: str | None = typer.Option(
        None, help="Also send it to this Kubeflow Pipelines endpoint (URL)."
    ),
) -> None:
    """Compile the pipeline: one container task per step, running the train image."""
    if target != "kubeflow":
        raise PipelineError(f"unknown target {target!r}", hint="the target is kubeflow")
    from shipml.pipeline.kubeflow import compile_pipeline
    from shipml.pipeline.kubeflow import submit as send

    config = project_config()
    compiled = compile_pipeline(config, output, params=_parse_params(param), image=image)
    stdout.print(
        f"[green]compiled[/] pipeline {compiled.pipeline} → {compiled.path} "
        f"({len(compiled.tasks)} tasks, image {compiled.image})",
        soft_wrap=True,
    )
    if not compiled.registers:
        _no_register_note()
    if config.kubeflow.caching and not compiled.kfp_caching:
        stdout.print(
            f"Kubeflow caching off: image {compiled.image} is not pinned, and a rebuilt image "
            "under the same name would hit KFP's cache with the old code (each step still "
            "skips its work when its manifest exists); pin it with \\[kubeflow] image_tag or "
            "image = NAME@sha256:...",
            soft_wrap=True,
        )
    if submit:
        run_id = send(compiled.path, submit)
        stdout.print(f"submitted to {submit}: run {run_id}")


@step_app.command("run")
def run_step(
    name: str = typer.Argument(..., help="The step (a node of the pipeline's graph)."),
    input_: list[str] = typer.Option(
        [], "--input", "-i", help="URI (or STEP=URI) an upstream step printed (repeatable)."
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE (repeatable)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run even if outputs exist."),
    output_file: Path | None = typer.Option(
        None, help="Also write the manifest URI to this file (for orchestrators)."
    ),
) -> None:
    """Run one step, reading its inputs from and writing its outputs to the artifact store;
    prints the URI of its outputs' manifest."""
    from shipml.pipeline.exchange import run_step as run

    result = run(
        project_config(), name, input_, params=_parse_params(param), use_cache=not no_cache
    )
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    stderr.print(
        f"step {name} {result.status} in {result.seconds:.2f}s · "
        f"{len(result.outputs)} output(s)" + (f" · {metrics}" if metrics else "")
    )
    if output_file is not None:
        output_file.parent.mkdir(parents=True, exist_ok=True)
        output_file.write_text(result.manifest)
    print(result.manifest)


@app.command("rehearse")
def rehearse(
    output: Path = typer.Option(Path("pipeline.yaml"), "--output", "-o", help="Where to write."),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE (repeatable)."),
    image: str | None = typer.Option(
        None, help="The train image (default \\[kubeflow] image, or <registry>/<project>-train)."
    ),
    docker_host: str | None = typer.Option(
        None, help="The engine's API: unix:///run/podman/podman.sock (default $DOCKER_HOST)."
    ),
    root: Path = typer.Option(
        Path(".shipml/kfp-local"), help="kfp's local pipeline root (the tasks' outputs)."
    ),
) -> None:
    """Compile the pipeline and run it with Kubeflow's own local runner (kfp.local,
    DockerRunner): every task in its own container, outputs through the artifact store,
    the model registered when the tracking store is a server. AWS_* and MLFLOW_* from
    your environment reach the containers; they are never printed."""
    from shipml.pipeline.kubeflow import compile_pipeline
    from shipml.pipeline.kubeflow import rehearse as run_locally

    config = project_config()
    compiled = compile_pipeline(config, output, params=_parse_params(param), image=image)
    stderr.print(
        f"compiled {compiled.pipeline} → {compiled.path} ({len(compiled.tasks)} tasks, image "
        f"{compiled.image}); running it with kfp.local's DockerRunner",
        soft_wrap=True,
    )
    result = run_locally(compiled.path, config.path(str(root)), docker_host=docker_host)
    stdout.print(
        f"[green]ran[/] {len(result.tasks)} tasks in {result.seconds:.1f}s, each in its own "
        f"container: {', '.join(result.tasks)}",
        soft_wrap=True,
    )
    if not compiled.registers:
        _no_register_note()


def _no_register_note() -> None:
    """Without a shared tracking store the compiled pipeline has no last task that records
    the run and registers the model; say so, or a user learns it after a cluster run."""
    stdout.print(
        "no model registered: \\[tracking] uri is a file the containers cannot share "
        "(point it at `shipml server start`)"
    )


@step_app.command("register")
def register(
    input_: list[str] = typer.Option(
        [], "--input", "-i", help="URI of a last step's manifest (repeatable)."
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE (repeatable)."),
    output_file: Path | None = typer.Option(
        None, help="Also write the run id to this file (for orchestrators)."
    ),
) -> None:
    """Record a pipeline that ran step by step (Kubeflow) as one MLflow run and register
    its model: the pipeline's last task. The other steps' manifests are found from those
    of the last steps."""
    from shipml.pipeline.stepwise import register_run

    if not input_:
        raise PipelineError(
            "no manifests given", hint="pass --input URI for each of the pipeline's last steps"
        )
    result = register_run(project_config(), input_, params=_parse_params(param))
    stdout.print(
        f"recorded {result.pipeline} ({len(result.steps)} steps) as run {result.run_id}",
        soft_wrap=True,
    )
    if output_file is not None:
        output_file.parent.mkdir(parents=True, exist_ok=True)
        output_file.write_text(result.run_id)
    if result.model_version is not None:
        state = "registered" if result.model_created else "unchanged, still"
        stdout.print(f"model: {state} {result.model_version.ref}")
