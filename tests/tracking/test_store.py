"""tracking/store.py: importing it leaves the user's process alone; opening a store turns
MLflow's telemetry off unless the user chose otherwise."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time

import pytest

from shipml.errors import TrackingError
from shipml.tracking.store import Tracker, run_metrics, scrub

CHECK = """
import logging, os, sys
before = dict(os.environ)
levels = {n: logging.getLogger(n).level for n in ('mlflow', 'alembic')}
import shipml.tracking.store as store
assert dict(os.environ) == before, 'importing the store changed the environment'
assert levels == {n: logging.getLogger(n).level for n in levels}, 'log levels changed'
assert 'mlflow' not in sys.modules, 'importing the store imported MLflow'
os.environ['DO_NOT_TRACK'] = 'false'  # the user's own choice is kept
store.no_telemetry()
assert os.environ['MLFLOW_ENABLE_TELEMETRY'] == 'false'
assert os.environ['DO_NOT_TRACK'] == 'false'
"""


def test_importing_the_store_changes_nothing_and_telemetry_is_off_when_it_opens():
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", CHECK], check=True, env=env)


def test_a_store_error_never_shows_the_password_of_the_tracking_uri(tmp_path, monkeypatch):
    """MLflow quotes the URL it called, password included; the error shows neither."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for password in ["s3cret-pw", "p%40s3cret", "p@s3cret"]:
        uri = f"http://alice:{password}@127.0.0.1:{port}/"
        tracker = Tracker(uri, uri, "e", str(tmp_path), timeout_s=1)
        with pytest.raises(TrackingError) as err:
            tracker.start_run("x", {})
        text = f"{err.value.message} {err.value.hint}"
        assert "alice" in text and "127.0.0.1" in text  # says where
        assert "s3cret" not in text, text


def test_scrub_hides_passwords_from_the_uri_the_environment_and_any_url(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "env-s3cret-pw")
    monkeypatch.setenv("PGPASSWORD", "pg-s3cret-pw")
    text = "GET https://bob:tok3n@h/x failed; http://u:zzzz@other/ too; env-s3cret-pw"
    out = scrub(text + " password=pg-s3cret-pw", "https://bob:tok3n@h/")
    assert "tok3n" not in out and "zzzz" not in out and "s3cret" not in out
    assert "https://bob:***@h/x" in out


@pytest.mark.parametrize("name", ["k" * 300, "top@1", "a?b"])
def test_a_name_mlflow_refuses_is_an_error_that_says_so(tmp_path, name):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, uri, "e", str(tmp_path))
    run_id = tracker.start_run("x", {})
    for log in (tracker.log_params, tracker.log_metrics):
        with pytest.raises(TrackingError) as err:
            log(run_id, {name: 1.0})
        assert "250 characters" in str(err.value.hint) and "rename it" in str(err.value.hint)
    tracker.log_params(run_id, {"a/b": 1, "c": "x" * 7000})  # MLflow truncates a long value
    tracker.log_metrics(run_id, {"nan": float("nan"), "inf": float("inf")})
    assert tracker.get_run(run_id).data.params["a/b"] == "1"


def test_an_infinite_metric_reads_back_as_infinity(tmp_path):
    """MLflow's SQL store keeps infinity as 1.8e308; shipml shows what the step logged."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, uri, "e", str(tmp_path))
    run_id = tracker.start_run("x", {})
    tracker.log_metrics(run_id, {"log_loss": float("inf"), "low": float("-inf"), "acc": 0.5})
    metrics = run_metrics(tracker.get_run(run_id))
    assert metrics == {"log_loss": math.inf, "low": -math.inf, "acc": 0.5}


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
import mlflow  # imported before the start line: the processes open the store together
from shipml.tracking.store import Tracker
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
uri = f"sqlite:///{sys.argv[1]}/mlflow.db"
tracker = Tracker(uri, uri, "e", sys.argv[1])
tracker.end_run(tracker.start_run("x", {}), "FINISHED")
"""


def test_commands_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    """Two `shipml run` in a fresh project: creating MLflow's tables at once collided
    ("table ... already exists")."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_ONCE, str(tmp_path), str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(4)  # long enough for each to import MLflow
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
    tracker = Tracker(*[f"sqlite:///{tmp_path}/mlflow.db"] * 2, "e", str(tmp_path))
    runs = tracker.client.search_runs([tracker.experiment_id()])
    assert [r.info.status for r in runs] == ["FINISHED"] * 4


def test_an_experiment_another_command_creates_meanwhile_is_used(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, uri, "e", str(tmp_path))
    other = Tracker(uri, uri, "e", str(tmp_path))
    create = tracker.client.create_experiment

    def beaten_to_it(name: str, **kwargs: object) -> str:
        theirs = other.experiment_id()  # between our lookup and our create
        create(name, **kwargs)  # MLflow: "Experiment(name=e) already exists"
        return theirs

    tracker.client.create_experiment = beaten_to_it  # type: ignore[method-assign]
    assert tracker.experiment_id() == other.experiment_id()
