"""The Kubeflow pipeline executed by Kubeflow's own runner: the template's pipeline,
compiled, run by kfp.local's DockerRunner on podman's Docker-compatible API, every task
in its own container of the train image built by `shipml build train`, the steps'
outputs through an S3-compatible store (moto), the model registered on the team's
tracking server. Its DAG and its model's signature are the local run's.

About 3 minutes here (2 cores, shared): seven containers, each starting shipml."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import boto3
import pytest

from shipml.config import ProjectConfig, load_config
from shipml.containers import BuiltImage
from shipml.model import ModelPackage
from shipml.pipeline import load_pipeline
from shipml.pipeline.kubeflow import (
    REGISTER,
    REHEARSAL_LABEL,
    compile_pipeline,
    load_tasks,
    rehearse,
    task_name,
)
from shipml.tracking import Registry, tracker_for
from tests.conftest import forget_s3_clients
from tests.e2e.conftest import BUCKET, Service

PREFIX = "kfp-rehearsal"


def _started_containers(rehearsal: str, since: float) -> list[dict]:
    """The containers podman started with the rehearsal's label (from its event log)."""
    done = subprocess.run(
        [
            "podman",
            "events",
            "--stream=false",
            "--since",
            f"{int(time.time() - since) + 5}s",
            "--filter",
            "event=start",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return [e for e in events if e.get("Attributes", {}).get(REHEARSAL_LABEL) == rehearsal]


def _steps_json(tracker, run_id: str) -> dict:
    return json.loads(
        Path(tracker.client.download_artifacts(run_id, "pipeline/steps.json")).read_text()
    )


def test_kfp_local_runs_every_task_in_a_container(
    tmp_path: Path,
    ct_project: ProjectConfig,
    train_image: BuiltImage,
    team_server: Service,
    podman_socket: str,
    monkeypatch: pytest.MonkeyPatch,
):
    env = {
        "SHIPML_ARTIFACTS_ROOT": f"s3://{BUCKET}/{PREFIX}",
        "SHIPML_TRACKING_URI": team_server.url,
    }
    config = load_config(ct_project.root, environ=env)
    compiled = compile_pipeline(config, tmp_path / "pipeline.yaml", params={"n_estimators": 20})
    assert compiled.registers and compiled.image in train_image.tags

    since = time.time() - 1
    result = rehearse(
        compiled.path,
        tmp_path / "kfp-root",
        docker_host=podman_socket,
        environ={**os.environ, **team_server.env},
    )
    graph = load_pipeline(ct_project).build({**ct_project.pipeline.params, "n_estimators": 20})
    steps = [task_name(n.name) for n in graph.nodes]
    assert sorted(result.tasks) == sorted([*steps, REGISTER])
    # Every task ran in a container of the train image (podman's own record of it) ...
    started = _started_containers(result.id, since)
    assert {e["Image"] for e in started} == {compiled.image}
    assert len(started) == len(steps) + 1, started
    # ... each step wrote its manifest, and its outputs went through the object store.
    assert sorted(result.manifests) == sorted(steps)
    s3 = boto3.client(
        "s3",
        endpoint_url=team_server.env["AWS_ENDPOINT_URL"],
        aws_access_key_id=team_server.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=team_server.env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/steps/")["Contents"]
    ]
    assert len([k for k in keys if "/manifests/" in k]) == len(steps)
    for uri in result.manifests.values():
        assert uri.startswith(f"s3://{BUCKET}/{PREFIX}/steps/manifests/")
    assert any("/objects/package-" in k for k in keys)

    # The run registered the model on the team's server ...
    for key, value in team_server.env.items():  # to read the run's artifacts in the bucket
        monkeypatch.setenv(key, value)
    forget_s3_clients()
    team = load_config(ct_project.root, environ=env)
    registry = Registry(tracker_for(team))
    (version,) = registry.versions(team.model_name)
    run = registry.tracker.get_run(version.run_id)
    assert run.data.tags["shipml.orchestrator"] == "kubeflow"
    assert run.info.status == "FINISHED" and run.info.run_id == result.run_id
    assert run.data.metrics["accuracy"] > 0.9
    # ... with the DAG and the model signature of the local run.
    local = Registry(tracker_for(ct_project))
    champion = local.resolve(f"{ct_project.model_name}@champion")
    local_steps = _steps_json(local.tracker, str(champion.run_id))
    kfp_steps = _steps_json(registry.tracker, str(version.run_id))
    assert sorted(map(tuple, kfp_steps["edges"])) == sorted(map(tuple, local_steps["edges"]))
    assert [s["name"] for s in kfp_steps["steps"]] == [s["name"] for s in local_steps["steps"]]
    tasks = load_tasks(compiled.path)
    last = [n.name for n in graph.nodes if not any(n.name in m.upstream for m in graph.nodes)]
    assert tasks.pop(REGISTER) == sorted(task_name(name) for name in last)
    assert tasks == {
        task_name(n.name): sorted(task_name(u) for u in n.upstream) for n in graph.nodes
    }
    kfp_pkg = ModelPackage.load(registry.local_path(version))
    local_pkg = ModelPackage.load(local.local_path(champion))
    assert kfp_pkg.signature.to_dict() == local_pkg.signature.to_dict()
