"""A pipeline that ran step by step (a Kubeflow task per step), recorded as one MLflow run
and its model registered: what ``shipml step register`` does as the pipeline's last task.

Each step left a manifest in the artifact store (``shipml.pipeline.exchange``) naming
the manifests it read. From the manifests of the last steps, the others are found by
following those names back; together they give what the local runner records: the
pipeline's parameters, every step's metrics, the dataset snapshots read, the steps and
the edges that data actually took (``pipeline/steps.json``), and the model package,
registered by the same rule as a local run (``shipml.pipeline.registration``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from shipml.config import ProjectConfig
from shipml.data import DatasetStore
from shipml.errors import PipelineError
from shipml.pipeline.cache import StoredOutput, project_cache
from shipml.pipeline.exchange import Exchange, manifest_name
from shipml.pipeline.loading import load_pipeline
from shipml.pipeline.registration import register_package
from shipml.tracking import VersionInfo, environment, git_info, tracker_for

MAX_STEPS = 10_000  # manifests followed before a loop is assumed


@dataclass
class Registered:
    run_id: str
    pipeline: str
    steps: list[str]
    edges: list[tuple[str, str]]
    metrics: dict[str, float] = field(default_factory=dict)
    model_version: VersionInfo | None = None
    model_created: bool = False


def collect(exchange: Exchange, uris: list[str]) -> dict[str, dict[str, Any]]:
    """The manifests of the steps that wrote ``uris`` and of every step upstream of them,
    by step name."""
    found: dict[str, dict[str, Any]] = {}
    todo = list(uris)
    while todo:
        if len(found) > MAX_STEPS:
            raise PipelineError("the step manifests refer to each other in a loop")
        data = exchange.read_manifest(todo.pop())
        step = str(data.get("step"))
        if step in found:
            continue
        found[step] = data
        inputs = data.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise PipelineError(f"the manifest of step '{step}' is damaged (inputs)")
        todo += [str(uri) for uri in inputs.values()]
    return found


def _check_complete(manifests: dict[str, dict[str, Any]], expected: list[str]) -> None:
    missing = [name for name in expected if name not in manifests]
    if missing:
        raise PipelineError(
            f"no outputs of step(s) {', '.join(missing)} among the manifests given",
            hint="pass the manifest URIs of the pipeline's last steps (--input)",
        )
    pipelines = {str(m.get("pipeline")) for m in manifests.values()}
    if len(pipelines) != 1:
        raise PipelineError(f"the manifests come from different pipelines: {sorted(pipelines)}")


def register_run(
    config: ProjectConfig,
    inputs: list[str],
    *,
    params: dict[str, Any] | None = None,
    orchestrator: str = "kubeflow",
) -> Registered:
    """Record the step-by-step run whose last steps wrote the manifests ``inputs`` as one
    MLflow run of the project's tracking store; register its model package, if any."""
    graph = load_pipeline(config).build({**config.pipeline.params, **(params or {})})
    exchange = Exchange(config.artifact_root)
    manifests = collect(exchange, inputs)
    order = [n.name for n in graph.nodes]
    _check_complete(manifests, order)
    edges = [(up, step) for step in order for up in sorted(manifests[step].get("inputs") or {})]
    tracker = tracker_for(config)
    git = git_info(config.root)
    tags = {
        "shipml.pipeline": graph.pipeline,
        "shipml.orchestrator": orchestrator,
        "mlflow.source.name": str(config.pipeline.file),
        "shipml.python": sys.version.split()[0],
    }
    if git.get("commit"):
        tags["mlflow.source.git.commit"] = str(git["commit"])
    run_id = tracker.start_run(graph.pipeline, tags)
    status = "FAILED"
    result = Registered(run_id, graph.pipeline, order, edges)
    try:
        tracker.log_params(run_id, graph.params)
        _log_datasets(config, tracker, run_id, manifests)
        for step in order:
            result.metrics.update(manifests[step].get("metrics") or {})
        tracker.log_metrics(run_id, result.metrics)
        steps = _steps_record(exchange, manifests, order)
        tracker.log_text(
            run_id, json.dumps({"steps": steps, "edges": edges}, indent=2), "pipeline/steps.json"
        )
        tracker.log_text(
            run_id,
            json.dumps(environment(config.cache_dir, config.root), indent=2),
            "environment.json",
        )
        _register(config, tracker, exchange, manifests, order, result)
        status = "FINISHED"
    finally:
        tracker.end_run(run_id, status)
    return result


def _steps_record(
    exchange: Exchange, manifests: dict[str, dict[str, Any]], order: list[str]
) -> list[dict[str, Any]]:
    """Each step as ``pipeline/steps.json`` records it: time, cache key, manifest, outputs."""
    record = []
    for step in order:
        m = manifests[step]
        key = str(m.get("key"))
        record.append(
            {
                "name": step,
                "status": "done",
                "seconds": m.get("seconds"),
                "cache_key": key,
                "manifest": exchange.manifest_uri(manifest_name(key, str(m.get("pipeline")), step)),
                "outputs": {
                    o["name"]: {"kind": o["kind"], "digest": o["digest"]}
                    for o in m.get("outputs") or []
                },
            }
        )
    return record


def _log_datasets(
    config: ProjectConfig, tracker: Any, run_id: str, manifests: dict[str, dict[str, Any]]
) -> None:
    store = DatasetStore(config.artifact_root, config.root)
    seen: set[str] = set()
    for data in manifests.values():
        for name, info in (data.get("datasets") or {}).items():
            if name in seen:
                continue
            seen.add(name)
            snap = store.get(f"{name}@{info['version']}")
            tracker.log_dataset(
                run_id,
                name=name,
                digest=snap.digest,
                source=snap.source,
                schema=snap.schema,
                rows=snap.rows,
                version=snap.version,
            )
            tracker.set_tags(run_id, {f"shipml.dataset.{name}.sha256": snap.digest})


def _register(
    config: ProjectConfig,
    tracker: Any,
    exchange: Exchange,
    manifests: dict[str, dict[str, Any]],
    order: list[str],
    result: Registered,
) -> None:
    packages = [
        StoredOutput(**o)
        for step in order
        for o in manifests[step].get("outputs") or []
        if o.get("kind") == "package"
    ]
    if not packages:
        return
    cache = project_cache(config)
    exchange.fetch(packages[-1], cache)
    result.model_version, result.model_created = register_package(
        tracker, config.model_name, result.run_id, cache.objects / packages[-1].file
    )
    tracker.set_tags(
        result.run_id,
        {
            "shipml.model.name": config.model_name,
            "shipml.model.version": result.model_version.version,
        },
    )
