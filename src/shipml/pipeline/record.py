"""What a pipeline run records in MLflow besides its steps' metrics: its source (tags),
its lineage (read by the steps that package a model), and its summary at the end."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from shipml.config import ProjectConfig
from shipml.data import Snapshot
from shipml.pipeline.executor import dataset_lineage
from shipml.pipeline.result import RunResult
from shipml.pipeline.step import Graph
from shipml.tracking import environment, package_versions

if TYPE_CHECKING:
    from shipml.tracking.protocol import RunTracker


def lineage(
    config: ProjectConfig,
    run_id: str,
    pipeline: str,
    params: dict[str, Any],
    snapshots: dict[str, Snapshot],
    git: dict[str, Any],
) -> dict[str, Any]:
    """Where a run's model came from: read by the steps (a package's lineage.json)."""
    return {
        "run_id": run_id,
        "experiment": config.experiment_name,
        "pipeline": pipeline,
        "params": params,
        "datasets": {n: dataset_lineage(s) for n, s in snapshots.items()},
        "git": git,
        "packages": package_versions(),
        "python": sys.version.split()[0],
    }


def run_tags(config: ProjectConfig, pipeline: str, git: dict[str, Any]) -> dict[str, str]:
    """The run's source: the pipeline, its file, the Python, the git commit (if any)."""
    tags = {
        "shipml.pipeline": pipeline,
        "mlflow.source.name": str(config.pipeline.file),
        "mlflow.source.type": "LOCAL",
        "shipml.python": sys.version.split()[0],
    }
    if git["commit"]:
        tags["mlflow.source.git.commit"] = git["commit"]
        tags["shipml.git.dirty"] = str(git["dirty"]).lower()
        if git.get("branch"):
            tags["mlflow.source.git.branch"] = git["branch"]
    else:
        tags["shipml.git.commit"] = "none (not a git repository)"
    return tags


def log_summary(
    tracker: RunTracker,
    config: ProjectConfig,
    graph: Graph,
    result: RunResult,
    metrics: dict[str, float],
    tags: dict[str, str],
) -> None:
    """The end of a run's record: its steps (with their cache keys and outputs), its
    environment, and the metrics and tags kept for one batch."""
    run_id = result.run_id
    steps = [
        {
            "name": s.name,
            "status": s.status,
            "seconds": round(s.seconds, 4),
            "cache_key": s.key,
            "code_files": s.code_files,
            "outputs": {n: {"kind": o.kind, "digest": o.digest} for n, o in s.outputs.items()},
            "error": s.error,
        }
        for s in result.steps
    ]
    tracker.log_text(
        run_id,
        json.dumps({"steps": steps, "edges": graph.edges()}, indent=2),
        "pipeline/steps.json",
    )
    tracker.log_text(
        run_id,
        json.dumps(environment(config.cache_dir, config.root), indent=2),
        "environment.json",
    )
    cached = sum(s.status == "cached" for s in result.steps)
    tags = {**tags, "shipml.steps.cached": f"{cached}/{len(result.steps)}"}
    if result.failed_step:
        result.traceback_file = result.step(result.failed_step).traceback_file
        tags["shipml.failed_step"] = result.failed_step
    tracker.log_batch(run_id, metrics, tags)


def end_failed(tracker: RunTracker, run_id: str, failure: BaseException) -> None:
    """End ``run_id`` as FAILED after ``failure`` (not RUNNING forever); a store error
    while doing so is added to ``failure`` as a note: the failure is what the user must
    see first."""
    from shipml.errors import ShipmlError

    try:
        tracker.end_run(run_id, "FAILED")
    except ShipmlError as exc:
        failure.add_note(f"ending the MLflow run {run_id} failed too: {exc.message}")
