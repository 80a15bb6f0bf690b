"""Compile the project's pipeline for Kubeflow Pipelines (kfp SDK ≥ 2.17, imported lazily:
``pip install shipml[kubeflow]``).

Each step becomes a container component running the train image:
``shipml step run NAME --input URI ... --output-file FILE``. The step writes its
outputs to the artifact store and hands the next task only the URI of its manifest (a
KFP string output), so the tasks' data edges are exactly the local DAG's edges.
KFP caching is on for steps with ``@step(cache=True)`` (and ``[kubeflow] caching``);
a step's CPU and memory come from ``[kubeflow.resources.STEP]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import PipelineError
from shipml.pipeline.runner import load_pipeline
from shipml.pipeline.step import Graph

OUTPUT = "manifest"


@dataclass
class Compiled:
    path: Path
    pipeline: str
    image: str
    tasks: dict[str, list[str]]  # KFP task name -> the task names it depends on


def _kfp() -> Any:
    try:
        import kfp
    except ImportError as exc:
        raise PipelineError(
            "compiling for Kubeflow needs the kfp SDK, which is not installed",
            hint="pip install 'shipml[kubeflow]'",
        ) from exc
    return kfp


def task_name(step: str) -> str:
    """The name KFP gives the task of ``step`` (lower case, DNS-safe)."""
    from kfp.dsl import utils

    return str(utils.sanitize_task_name(step))


def _input(up: str) -> str:
    return f"{up.lower()}_manifest"


def _component(name: str, upstream: list[str], image: str, params: dict[str, Any]) -> str:
    import json

    import yaml

    command: list[Any] = ["shipml", "step", "run", name]
    for key, value in params.items():
        command += ["--param", f"{key}={json.dumps(value)}"]
    for up in upstream:
        command += ["--input", {"inputValue": _input(up)}]
    command += ["--output-file", {"outputPath": OUTPUT}]
    spec = {
        "name": name,
        "description": f"shipml step {name}",
        "inputs": [{"name": _input(up), "type": "String"} for up in upstream],
        "outputs": [{"name": OUTPUT, "type": "String"}],
        "implementation": {"container": {"image": image, "command": command}},
    }
    return str(yaml.safe_dump(spec, sort_keys=False))


def image_of(config: ProjectConfig) -> str:
    registry = config.deploy.image_registry.rstrip("/")
    project = config.project.name.lower().replace("_", "-")
    return config.kubeflow.image or f"{registry}/{project}-train:{config.kubeflow.image_tag}"


def compile_pipeline(
    config: ProjectConfig,
    output: Path,
    *,
    params: dict[str, Any] | None = None,
    image: str | None = None,
) -> Compiled:
    """Write the KFP pipeline YAML of the project's pipeline to ``output``."""
    kfp = _kfp()
    from kfp import compiler, components, dsl

    pipe = load_pipeline(config)
    graph: Graph = pipe.build({**config.pipeline.params, **(params or {})})
    image = image or image_of(config)
    root = config.artifact_root
    if "://" not in root or root.startswith("file://"):
        raise PipelineError(
            f"Kubeflow tasks run in separate pods, but [artifacts] root is a local folder "
            f"({root}), which they cannot share",
            hint='point the tasks at an object store: SHIPML_ARTIFACTS_ROOT="s3://BUCKET/PREFIX"',
        )
    resources = config.kubeflow.resources
    unknown = sorted(set(resources) - {n.name for n in graph.nodes})
    if unknown:
        raise PipelineError(
            f"[kubeflow.resources] names unknown steps {unknown}",
            hint=f"the steps: {', '.join(n.name for n in graph.nodes)}",
        )

    def body() -> None:
        tasks: dict[str, Any] = {}
        for node in graph.nodes:
            factory = components.load_component_from_text(
                _component(node.name, node.upstream, image, graph.params)
            )
            task = factory(**{_input(up): tasks[up].outputs[OUTPUT] for up in node.upstream})
            task.set_display_name(node.name)
            task.set_caching_options(bool(config.kubeflow.caching and node.step.cache))
            task.set_env_variable("SHIPML_ARTIFACTS_ROOT", root)
            res = resources.get(node.name)
            if res is not None:
                for setting, method in (
                    ("cpu_request", task.set_cpu_request),
                    ("cpu_limit", task.set_cpu_limit),
                    ("memory_request", task.set_memory_request),
                    ("memory_limit", task.set_memory_limit),
                ):
                    if getattr(res, setting):
                        method(getattr(res, setting))
            tasks[node.name] = task

    body.__name__ = graph.pipeline
    body.__annotations__ = {}  # kfp reads a return annotation as an output type
    description = (pipe.func.__doc__ or f"shipml pipeline {graph.pipeline}").strip()
    pipeline_func = dsl.pipeline(name=task_name(graph.pipeline), description=description)(body)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        compiler.Compiler().compile(pipeline_func, str(output))
    except (ValueError, TypeError) as exc:
        raise PipelineError(
            f"kfp cannot compile the pipeline: {exc}",
            hint=f"kfp {kfp.__version__}; check the step names",
        ) from exc
    return Compiled(output, graph.pipeline, image, load_tasks(output))


def load_tasks(path: Path) -> dict[str, list[str]]:
    """Load a compiled pipeline back with the kfp SDK: its tasks and their dependencies."""
    _kfp()
    from kfp import components

    loaded = components.load_component_from_file(str(path))
    dag = loaded.pipeline_spec.root.dag
    return {name: sorted(task.dependent_tasks) for name, task in dag.tasks.items()}


def submit(path: Path, host: str, *, run_name: str | None = None) -> str:
    """Send a compiled pipeline to a Kubeflow Pipelines endpoint; returns the run id."""
    kfp = _kfp()
    try:
        client = kfp.Client(host=host)
        run = client.create_run_from_pipeline_package(str(path), arguments={}, run_name=run_name)
    except Exception as exc:  # kfp raises urllib3, ApiException, ValueError...
        raise PipelineError(
            f"cannot submit {path.name} to Kubeflow Pipelines at {host}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            hint="check the URL (the KFP API, e.g. http://HOST:8888) and that you can reach it",
        ) from exc
    return str(run.run_id)
