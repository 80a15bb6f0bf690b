"""Compile the project's pipeline for Kubeflow Pipelines (kfp SDK ≥ 2.17, imported lazily:
``pip install shipml[kubeflow]``).

Each step becomes a container component running the train image:
``shipml step run NAME --input URI ... --output-file FILE``. The step writes its
outputs to the artifact store and hands the next task only the URI of its manifest (a
KFP string output), so the tasks' data edges are exactly the local DAG's edges.
KFP caching is on for steps with ``@step(cache=True)`` (and ``[kubeflow] caching``);
a step's CPU and memory come from ``[kubeflow.resources.STEP]``.

When the tracking store can be reached from the pods (a server or a database, not a
SQLite file), a last task, ``shipml-register``, records the run in it and registers the
model (``shipml step register``, see ``shipml.pipeline.stepwise``).

``rehearse`` runs a compiled file with the kfp SDK's own local runner (``kfp.local``,
``DockerRunner``): every task in its own container, on Docker or on podman's
Docker-compatible API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import PipelineError
from shipml.pipeline.loading import load_pipeline
from shipml.pipeline.step import Graph
from shipml.tracking.server import split_password

OUTPUT = "manifest"
REGISTER = "shipml-register"  # the last task's name (a step's name has no "-")
RUN_OUTPUT = "run"  # its output: the MLflow run it recorded
REHEARSAL_LABEL = "io.shipml.rehearsal"  # on the containers of `rehearse`
# Tracking stores the pods cannot share: a file on the machine that compiled.
LOCAL_STORES = ("sqlite:", "file:", "./", "/")
# What a task may need from the environment of `rehearse`: the object store's and the
# tracking server's credentials and endpoints. Passed by name, never printed.
PASSED_ENV = (
    *("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"),
    *("AWS_DEFAULT_REGION", "AWS_REGION", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_USERNAME"),
    *("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD"),
)


@dataclass
class Compiled:
    path: Path
    pipeline: str
    image: str
    tasks: dict[str, list[str]]  # KFP task name -> the task names it depends on
    registers: bool = False  # a last task records the run and registers the model
    kfp_caching: bool = True  # off when the image is not pinned (``pinned``)


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
    """An identifier kfp keeps as it is (it renamed ``nettoyé_manifest``: the call failed)."""
    return f"{task_name(up).replace('-', '_')}_manifest"


def _component(name: str, upstream: list[str], image: str, params: dict[str, Any]) -> str:
    """A step's component; for REGISTER, the last task, which takes the manifests of the
    steps nothing else reads."""
    import json

    import yaml

    register = name == REGISTER
    command: list[Any] = ["shipml", "step", "register" if register else "run"]
    command += [] if register else [name]
    for key, value in params.items():
        command += ["--param", f"{key}={json.dumps(value)}"]
    for up in upstream:
        command += ["--input", {"inputValue": _input(up)}]
    output = RUN_OUTPUT if register else OUTPUT
    command += ["--output-file", {"outputPath": output}]
    spec = {
        "name": name,
        "description": "record the run and register its model" if register else f"step {name}",
        "inputs": [{"name": _input(up), "type": "String"} for up in upstream],
        "outputs": [{"name": output, "type": "String"}],
        "implementation": {"container": {"image": image, "command": command}},
    }
    return str(yaml.safe_dump(spec, sort_keys=False))


def shared_tracking(config: ProjectConfig) -> bool:
    """Whether the pods can reach the tracking store (a server or a database)."""
    return not config.tracking_uri.startswith(LOCAL_STORES)


def image_of(config: ProjectConfig) -> str:
    registry = config.deploy.image_registry
    project = config.project.name.lower().replace("_", "-")
    return config.kubeflow.image or f"{registry}/{project}-train:{config.kubeflow.image_tag}"


def pinned(image: str) -> bool:
    """Whether ``image`` names one build (a digest, or a tag other than ``latest``): KFP's
    cache keys a task by the image's name, so a rebuilt ``:latest`` would hit it."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    return "@sha256:" in image or (bool(tag) and tag != "latest")


def compile_pipeline(
    config: ProjectConfig,
    output: Path,
    *,
    params: dict[str, Any] | None = None,
    image: str | None = None,
) -> Compiled:
    """Write the KFP pipeline YAML of the project's pipeline to ``output``."""
    kfp = _kfp()
    from kfp import compiler, dsl

    pipe = load_pipeline(config)
    graph: Graph = pipe.build({**config.pipeline.params, **(params or {})})
    image = image or image_of(config)
    registers = _check(config, graph)
    caching = config.kubeflow.caching and pinned(image)
    body = _pipeline_body(config, graph, image, registers, caching)
    body.__name__ = graph.pipeline
    body.__annotations__ = {}  # kfp reads a return annotation as an output type
    description = (pipe.func.__doc__ or f"shipml pipeline {graph.pipeline}").strip()
    output.parent.mkdir(parents=True, exist_ok=True)
    try:  # kfp refuses a name that is nothing once made lower-case a-z, 0-9 and - ("é")
        pipeline_func = dsl.pipeline(name=task_name(graph.pipeline), description=description)(body)
        compiler.Compiler().compile(pipeline_func, str(output))
    except (ValueError, TypeError) as exc:
        raise PipelineError(
            f"kfp cannot compile the pipeline: {exc}",
            hint=f"kfp {kfp.__version__}; check the pipeline's and the steps' names",
        ) from exc
    return Compiled(output, graph.pipeline, image, load_tasks(output), registers, caching)


def _check(config: ProjectConfig, graph: Graph) -> bool:
    """Refuse what cannot run in pods; whether the pipeline ends with the register task."""
    root = config.artifact_root
    if "://" not in root or root.startswith("file://"):
        raise PipelineError(
            f"Kubeflow tasks run in separate pods, but [artifacts] root is a local folder "
            f"({root}), which they cannot share",
            hint='point the tasks at an object store: SHIPML_ARTIFACTS_ROOT="s3://BUCKET/PREFIX"',
        )
    unknown = sorted(set(config.kubeflow.resources) - {n.name for n in graph.nodes})
    if unknown:
        raise PipelineError(
            f"[kubeflow.resources] names unknown steps {unknown}",
            hint=f"the steps: {', '.join(n.name for n in graph.nodes)}",
        )
    _check_task_names(graph)
    registers = shared_tracking(config)
    if registers and split_password(config.tracking_uri)[1] is not None:
        raise PipelineError(
            "[tracking] uri holds a password, which would be written into the compiled file",
            hint="take it out of the URI; give it to the pods from a Secret (PGPASSWORD)",
        )
    if registers and REGISTER in {task_name(n.name) for n in graph.nodes}:
        raise PipelineError(
            f"a step's task is named {REGISTER}, the name of shipml's last task",
            hint="rename that step",
        )
    return registers


def _check_task_names(graph: Graph) -> None:
    """Each step needs a task name of its own: kfp lowers case and turns what is not
    a-z or 0-9 into "-", so ``Prep`` and ``prep``, or ``a_b`` and ``a__b``, meet."""
    seen: dict[str, str] = {}
    for node in graph.nodes:
        task = task_name(node.name)
        other = seen.setdefault(task, node.name)
        if other != node.name or not task.strip("-"):
            raise PipelineError(
                f"step{'s ' + repr(other) + ' and' if other != node.name else ''} "
                f"{node.name!r} become the Kubeflow task {task!r}",
                hint="Kubeflow task names are lower case a-z, 0-9 and -: rename the step "
                "(@step(name=...)) so that each gives a task name of its own",
            )


def _pipeline_body(
    config: ProjectConfig, graph: Graph, image: str, registers: bool, caching: bool
) -> Callable[[], None]:
    """The function kfp's ``dsl.pipeline`` turns into the DAG: one task per step, then
    (with a shared tracking store) the task that records the run and registers it."""
    from kfp import components

    root = config.artifact_root
    last = [n.name for n in graph.nodes if not any(n.name in m.upstream for m in graph.nodes)]

    def body() -> None:
        tasks: dict[str, Any] = {}
        for node in graph.nodes:
            factory = components.load_component_from_text(
                _component(node.name, node.upstream, image, graph.params)
            )
            task = factory(**{_input(up): tasks[up].outputs[OUTPUT] for up in node.upstream})
            task.set_display_name(node.name)
            task.set_caching_options(caching and node.step.cache)
            task.set_env_variable("SHIPML_ARTIFACTS_ROOT", root)
            _set_resources(task, config.kubeflow.resources.get(node.name))
            tasks[node.name] = task
        if registers:
            factory = components.load_component_from_text(
                _component(REGISTER, last, image, graph.params)
            )
            task = factory(**{_input(up): tasks[up].outputs[OUTPUT] for up in last})
            task.set_display_name("register")
            task.set_caching_options(False)
            task.set_env_variable("SHIPML_ARTIFACTS_ROOT", root)
            task.set_env_variable("SHIPML_TRACKING_URI", config.tracking_uri)
            if config.tracking.registry_uri:
                task.set_env_variable("SHIPML_TRACKING_REGISTRY_URI", config.registry_uri)

    return body


def _set_resources(task: Any, res: Any) -> None:
    if res is None:
        return
    for setting, method in (
        ("cpu_request", task.set_cpu_request),
        ("cpu_limit", task.set_cpu_limit),
        ("memory_request", task.set_memory_request),
        ("memory_limit", task.set_memory_limit),
    ):
        if getattr(res, setting):
            method(getattr(res, setting))


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


@dataclass
class Rehearsal:
    pipeline: str
    tasks: list[str]  # the tasks that ran, in order
    manifests: dict[str, str]  # task -> the URI of its step's manifest
    seconds: float
    id: str  # the value of the label REHEARSAL_LABEL on its containers
    run_id: str | None = None  # the MLflow run the last task recorded


def rehearse(
    path: Path,
    pipeline_root: Path,
    *,
    docker_host: str | None = None,
    network: str = "host",
    environ: dict[str, str] | None = None,
) -> Rehearsal:
    """Run the compiled pipeline ``path`` with kfp's local runner, every task in its own
    container (``kfp.local.DockerRunner``) on Docker or podman's Docker-compatible API
    (``docker_host``, default $DOCKER_HOST). Containers join ``network`` ("host": they
    reach servers on this machine at 127.0.0.1) and get the credentials of
    ``PASSED_ENV`` found in ``environ`` (default: this process's environment)."""
    import os
    import time
    import uuid

    _kfp()
    environ = dict(os.environ if environ is None else environ)
    host = docker_host or environ.get("DOCKER_HOST", "")
    _engine_answers(host)
    pipeline_root.mkdir(parents=True, exist_ok=True)
    pipeline_root.chmod(0o777)  # the image's user (not root) writes the tasks' outputs
    env = {name: environ[name] for name in PASSED_ENV if environ.get(name)}
    rehearsal = uuid.uuid4().hex
    started = time.perf_counter()
    name = _run_locally(path, pipeline_root, host, network, env, rehearsal)
    seconds = time.perf_counter() - started
    tasks, manifests, run_id = _outputs(path, pipeline_root)
    return Rehearsal(name, tasks, manifests, seconds, rehearsal, run_id)


def _engine_answers(host: str) -> None:
    try:
        import docker
    except ImportError as exc:
        raise PipelineError(
            "rehearsing needs the docker package", hint="pip install 'shipml[kubeflow]'"
        ) from exc
    try:
        client = docker.DockerClient(base_url=host) if host else docker.from_env()
        client.ping()
        client.close()
    except Exception as exc:  # docker raises DockerException, requests' errors...
        raise PipelineError(
            f"no Docker-compatible engine answers at {host or 'the default socket'}: "
            f"{type(exc).__name__}",
            hint="start one: `podman system service --time=0 unix:///run/podman/podman.sock` "
            "and DOCKER_HOST=unix:///run/podman/podman.sock (scripts/podman-socket.sh)",
        ) from exc


def _run_locally(
    path: Path, pipeline_root: Path, host: str, network: str, env: dict[str, str], label: str
) -> str:
    """Run the pipeline with kfp's DockerRunner; returns the pipeline's name."""
    import os

    from kfp import components, local

    saved = os.environ.get("DOCKER_HOST")
    try:
        if host:
            os.environ["DOCKER_HOST"] = host  # kfp's handler calls docker.from_env()
        # Kubernetes runs a task's command in place of the image's ENTRYPOINT (shipml);
        # the docker API appends it to the ENTRYPOINT. /usr/bin/env runs it as-is.
        runner = local.DockerRunner(
            network_mode=network,
            environment=env,
            entrypoint=["/usr/bin/env"],
            labels={REHEARSAL_LABEL: label},  # the engine's events name the run's tasks
        )
        local.init(
            runner=runner,
            pipeline_root=str(pipeline_root.resolve()),
            raise_on_error=True,
        )
        pipe = components.load_component_from_file(str(path))
        try:
            pipe()
        except (RuntimeError, ValueError) as exc:  # a task failed / left no output
            raise PipelineError(
                f"the local Kubeflow run failed: {str(exc).splitlines()[0]}",
                hint="the tasks' own output above says why",
            ) from exc
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
    return str(pipe.name)


def _outputs(path: Path, pipeline_root: Path) -> tuple[list[str], dict[str, str], str | None]:
    """The tasks in the order they ran, each step's manifest URI and the MLflow run id;
    a task that left no output fails the rehearsal."""
    deps = load_tasks(path)
    tasks: list[str] = []
    while len(tasks) < len(deps):  # in the order they ran: each after its dependencies
        tasks += sorted(t for t, d in deps.items() if t not in tasks and set(d) <= set(tasks))
    root = pipeline_root.resolve()
    manifests = {out.parent.name: out.read_text().strip() for out in root.glob(f"*/*/{OUTPUT}")}
    runs = [out.read_text().strip() for out in root.glob(f"*/{REGISTER}/{RUN_OUTPUT}")]
    # kfp counts a container that was gone before it was asked for its exit code as a
    # success: a step task succeeded only if it wrote its manifest's URI.
    missing = [t for t in tasks if t != REGISTER and t not in manifests]
    missing += [REGISTER] if REGISTER in tasks and not runs else []
    if missing:
        raise PipelineError(
            f"the local Kubeflow run failed: task(s) {', '.join(missing)} wrote no output",
            hint="the tasks' own output above says why",
        )
    return tasks, manifests, runs[0] if runs else None
