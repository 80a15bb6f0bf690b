"""One conformance suite for the ``RunTracker`` protocol, run against both trackers: the
in-process ``Tracker`` and the worker's ``RemoteTracker`` (as scikit-learn's
check_estimator runs one suite against every estimator). Each writes to a real MLflow
store and is read back with MLflow's own client: the same calls record the same things
and fail the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from shipml.config import ProjectConfig, load_config
from shipml.errors import TrackingError
from shipml.templates import create_project
from shipml.tracking import tracker_for
from shipml.tracking.protocol import RunTracker
from shipml.tracking.remote import remote_tracker_for
from shipml.tracking.worker import TrackingWorker


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    """One project (its MLflow store) for the module: each test makes its own runs."""
    return load_config(create_project(tmp_path_factory.mktemp("protocol") / "p", "penguins"))


@pytest.fixture(scope="module", params=["in-process", "worker"])
def tracker(request: pytest.FixtureRequest, config: ProjectConfig) -> Iterator[RunTracker]:
    """Each tracker once per module (a worker imports MLflow when it starts)."""
    if request.param == "in-process":
        yield tracker_for(config)
        return
    with TrackingWorker.start() as worker:
        yield remote_tracker_for(worker, config)


def test_both_trackers_are_run_trackers(tracker: RunTracker) -> None:
    assert isinstance(tracker, RunTracker)


def test_a_run_records_what_it_was_given(
    tracker: RunTracker, config: ProjectConfig, tmp_path: Path
) -> None:
    run_id = tracker.start_run("conformance", {"shipml.pipeline": "p"})
    tracker.log_params(run_id, {"depth": 3, "kind": "forest", "grid": [1, 2]})
    tracker.log_metrics(run_id, {"accuracy": 0.75}, step=2)
    tracker.log_batch(run_id, {"f1": 0.5}, {"shipml.steps.cached": "2"})
    tracker.set_tags(run_id, {"team": "a"})
    tracker.log_text(run_id, "hello", "notes/hello.txt")
    folder = tmp_path / "files"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "a.json").write_text("{}")
    tracker.log_artifacts(run_id, folder, "bundle")
    schema = [{"name": "x", "type": "float", "nullable": False}]
    digest = "ab" * 32
    tracker.log_dataset(run_id, name="penguins", digest=digest, source="s", schema=schema, rows=9)
    uri = tracker.artifact_uri(run_id)
    tracker.end_run(run_id, "FINISHED")

    run = MlflowClient(config.tracking_uri, config.registry_uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "conformance"
    assert uri == run.info.artifact_uri and uri.endswith(f"{run_id}/artifacts")
    assert run.data.params == {"depth": "3", "kind": "forest", "grid": "[1, 2]"}
    assert run.data.metrics == {"accuracy": 0.75, "f1": 0.5}
    tags = run.data.tags
    assert (tags["shipml.pipeline"], tags["shipml.steps.cached"], tags["team"]) == ("p", "2", "a")
    client = MlflowClient(config.tracking_uri)
    assert [m.step for m in client.get_metric_history(run_id, "accuracy")] == [2]
    files = {a.path for a in client.list_artifacts(run_id, "bundle/inner")}
    assert files == {"bundle/inner/a.json"}
    assert client.download_artifacts(run_id, "notes/hello.txt", str(tmp_path))
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "penguins" and digest in dataset.dataset.profile


def test_a_refused_call_is_a_tracking_error_by_end_run_at_the_latest(
    tracker: RunTracker, config: ProjectConfig
) -> None:
    run_id = tracker.start_run("refused", {})
    with pytest.raises(TrackingError, match="set_tags"):
        tracker.set_tags(run_id, {"bad@key": "v"})  # MLflow refuses the name
        tracker.end_run(run_id, "FINISHED")


def test_an_unknown_run_is_a_tracking_error_naming_the_call(tracker: RunTracker) -> None:
    with pytest.raises(TrackingError, match="log_params") as err:
        tracker.log_params("0" * 32, {"a": 1})
    assert err.value.hint
