"""The anytime contract on the template project, as a user meets it: `shipml tune` killed
with SIGTERM still leaves its best-so-far trained again, tested and registered as
challenger; started again it resumes the same study and keeps its budget.

One journey, paid once: the 60 s acceptance run is measured by
benchmarks/tune_budget.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from shipml.config import load_config
from shipml.templates import create_project
from shipml.tracking import Registry, tracker_for
from tests.conftest import SHIPML, shipml, shipml_here


def _children(config, parent: str) -> list:
    tracker = tracker_for(config)
    runs = tracker.client.search_runs([tracker.experiment_id()], max_results=1000)
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]


def test_sigterm_leaves_a_tested_challenger_and_the_study_resumes(tmp_path: Path) -> None:
    root = create_project(tmp_path / "tuned", "tuned")
    untuned = shipml("run", cwd=root)
    assert untuned.returncode == 0, untuned.stderr
    config = load_config(root)
    tracker = tracker_for(config)
    registry = Registry(tracker)
    baseline = tracker.get_run(registry.resolve("tuned/1").run_id).data.metrics["accuracy"]

    proc = subprocess.Popen(
        [*SHIPML, "tune", "--budget", "60s"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The signal comes once a trial has finished (its line on stderr), mid-search: what
    # is tested is what SIGTERM leaves, not how many trials fit in a wait.
    streams: dict[str, list[str]] = {"out": [], "err": []}
    finished = threading.Event()

    def read(name: str, stream: IO[str]) -> None:
        for line in stream:
            streams[name].append(line)
            if name == "err" and "✓ trial" in line:
                finished.set()

    readers = [
        threading.Thread(target=read, args=(name, stream), daemon=True)
        for name, stream in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    assert finished.wait(timeout=120), "".join(streams["err"])[-2000:]
    assert proc.poll() is None, "".join(streams["err"])[-2000:]  # 60 s of budget: searching
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=240)
    for reader in readers:
        reader.join(timeout=30)
    out, err = "".join(streams["out"]), "".join(streams["err"])
    assert proc.returncode == 0, err[-2000:]
    assert "(signal SIGTERM)" in out
    assert "trained again: reproducible" in out

    challenger = registry.resolve("tuned@challenger")
    record = json.loads(challenger.tags["shipml.tune.record"])
    tests = json.loads(challenger.tags["shipml.tests.record"])
    assert tests["status"] == "passed" and set(tests["suites"]) == set(config.gates.suites)
    assert json.loads(challenger.tags["shipml.reproducibility"])["status"] == "passed"
    assert record["untuned"] == [] and record["trials_complete"] >= 1
    parent = record["parent_run"]
    assert len(_children(config, parent)) >= record["trials_complete"]
    # The search started from the defaults, so the tuned model is at least as good.
    tuned = tracker.get_run(challenger.run_id).data.metrics["accuracy"]
    assert tuned >= baseline

    # The resumed session must have time for a trial: a budget of a few trials as long
    # as the first session's were on this machine (a busy one is slower), at least 15 s.
    first = tracker.client.download_artifacts(parent, "tune/record.json", str(tmp_path / "1"))
    took = [t["seconds"] for t in json.loads(Path(first).read_text())["trials"] if t["seconds"]]
    budget = max(15, round(3 * max(took)))
    again = shipml("tune", "--budget", f"{budget}s", "--no-test", cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"run {parent}" in again.stdout.replace("\n", "")  # the same study and search run
    numbers = sorted(int(r.data.tags["shipml.tune.trial"]) for r in _children(config, parent))
    assert numbers[-1] >= record["trials"]  # numbering goes on from the first session
    saved = tracker.client.download_artifacts(parent, "tune/record.json", str(tmp_path))
    history = json.loads(Path(saved).read_text())
    session = history["session"]
    assert session["stopped_by"] == "budget"
    assert 0.95 * budget <= session["seconds"] <= 1.05 * budget  # the budget, kept to ±5%
    assert history["curve"] and history["curve"][-1]["trials"] >= record["trials_complete"]
    svg = tracker.client.download_artifacts(parent, "tune/curve.svg", str(tmp_path / "svg"))
    assert Path(svg).read_text().startswith("<svg")


def test_bad_tune_options_are_clear_errors(tmp_path: Path) -> None:
    root = create_project(tmp_path / "p", "p", git=False)
    bad = shipml("tune", "--budget", "ten minutes", cwd=root)
    assert bad.returncode == 17
    assert "cannot read the budget 'ten minutes'" in bad.stderr and "Traceback" not in bad.stderr
    toml = (
        (root / "shipml.toml").read_text().replace("low = 20, high = 400", "low = 400, high = 20")
    )
    (root / "shipml.toml").write_text(toml)
    bad = shipml("tune", cwd=root)
    assert bad.returncode == 3 and "low < high" in bad.stderr


@pytest.fixture
def pg_store() -> Iterator[tuple[str, str]]:
    """(a tracking URI without the password whose search_path is a fresh schema, the
    password) on POSTGRES_TEST_URL: skipped without it, a failure in CI."""
    from sqlalchemy.engine import make_url

    url = os.environ.get("POSTGRES_TEST_URL", "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI needs PostgreSQL: POSTGRES_TEST_URL is not set (scripts/postgres.sh)")
        pytest.skip("no PostgreSQL (set POSTGRES_TEST_URL)")
    import psycopg

    schema = f"tunejobs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    parsed = make_url(url)
    bare = parsed.set(drivername="postgresql+psycopg", password=None)
    uri = bare.render_as_string(hide_password=False)
    yield f"{uri}?options=-csearch_path%3D{schema}", str(parsed.password or "")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_a_worker_and_the_lead_share_one_study_in_postgresql(
    tmp_path: Path, pg_store: tuple[str, str]
) -> None:
    """What the Kubernetes tuning Jobs run (deploy.tuning), as two processes: a worker and
    the lead, started apart, on one PostgreSQL study; the lead wraps up the trials of both."""
    uri, password = pg_store
    root = create_project(tmp_path / "shared", "shared", git=False)
    toml = root / "shipml.toml"
    toml.write_text(toml.read_text().replace('"sqlite:///.shipml/mlflow.db"', f'"{uri}"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    env["PGPASSWORD"] = password
    # The store is made first, as it is for a deployed project (its champion is in it):
    # two processes creating MLflow's tables at once collide in PostgreSQL.
    os.environ["PGPASSWORD"] = password
    try:
        tracker_for(load_config(root)).experiment_id()
    finally:
        del os.environ["PGPASSWORD"]
    # The study goes into the database's schema "optuna", whatever the search_path:
    # a name of its own.
    study = f"shared-{uuid.uuid4().hex[:8]}"
    # A trial each, one process after the other: counted in trials, not seconds, so a
    # busy machine cannot leave a process without a finished trial.
    args = ["--study", study, "--budget", "150s", "--trials", "1"]
    popen = {"cwd": root, "env": env, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    worker = subprocess.Popen([*SHIPML, "tune", "--worker", *args], text=True, **popen)
    w_out, w_err = worker.communicate(timeout=180)
    lead = subprocess.Popen([*SHIPML, "tune", "--no-test", *args], text=True, **popen)
    out, err = lead.communicate(timeout=180)
    assert worker.returncode == 0, w_err[-2000:]
    assert lead.returncode == 0, err[-2000:]
    assert password not in out + err + w_out + w_err

    os.environ["PGPASSWORD"] = password  # this process reads the same store
    try:
        config = load_config(root)
        registry = Registry(tracker_for(config))
        challenger = registry.resolve("shared@challenger")
        record = json.loads(challenger.tags["shipml.tune.record"])
        assert record["study"] == study and record["storage"].startswith("postgresql")
        children = _children(config, record["parent_run"])
    finally:
        del os.environ["PGPASSWORD"]
    by = {}
    for run in children:
        if run.data.tags.get("shipml.tune.role") != "final":
            by.setdefault(run.data.tags["shipml.tune.process"], []).append(run)
    assert len(by) == 2, sorted(by)  # trials from both processes
    assert any(p.endswith(f":{worker.pid}") for p in by)
    assert any(p.endswith(f":{lead.pid}") for p in by)
    numbers = [int(r.data.tags["shipml.tune.trial"]) for runs in by.values() for r in runs]
    assert len(numbers) == len(set(numbers))  # one study numbers the trials of both
    assert record["trials"] >= len(numbers) >= 2


def test_a_wrap_up_that_fails_ends_the_search_run_failed(tmp_path: Path, monkeypatch) -> None:
    """The best trial trained again fails: the error is raised, and the search's run is
    ended FAILED rather than left RUNNING."""
    import shipml.project.tune as project_tune
    from shipml.errors import StepFailed
    from tests.pipeline.test_tune import make

    root = make(tmp_path / "store", tmp_path)

    def fails(*args, **kwargs):
        raise StepFailed("score", "step 'score' failed: the final run broke")

    monkeypatch.setattr(project_tune, "run_pipeline", fails)
    with pytest.raises(StepFailed, match="the final run broke"):
        project_tune.tune(load_config(root), trials=2, test=False)
    tracker = tracker_for(load_config(root))
    runs = tracker.client.search_runs([tracker.experiment_id()])
    (parent,) = [r for r in runs if r.data.tags.get("shipml.tune.role") == "search"]
    assert parent.info.status == "FAILED"
    assert len(_children(load_config(root), parent.info.run_id)) == 2  # the trials are kept


def test_a_ctrl_c_while_the_search_run_is_finished_ends_it_failed(
    tmp_path: Path, monkeypatch
) -> None:
    """Ctrl-C during the wrap-up, after the best trial was trained again, while the search
    run's curve is drawn: that run was left RUNNING forever."""
    from shipml.project.tune import tune
    from shipml.report import charts
    from tests.pipeline.test_tune import make

    root = make(tmp_path / "store", tmp_path)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(charts, "line_chart", ctrl_c)  # the moment cannot be timed for real
    with pytest.raises(KeyboardInterrupt):
        tune(load_config(root), trials=2, test=False)
    # the command said nothing at all: it now says what was left undone (exit code 130)
    done = shipml_here("tune", "--trials", "1", "--no-test", cwd=root)
    assert done.returncode == 130
    assert "interrupted: the best trial was not (or not fully) registered" in " ".join(
        done.stderr.split()
    )
    tracker = tracker_for(load_config(root))
    runs = tracker.client.search_runs([tracker.experiment_id()])
    (parent,) = [r for r in runs if r.data.tags.get("shipml.tune.role") == "search"]
    assert parent.info.status == "FAILED"
    finals = [r for r in runs if r.data.tags.get("shipml.tune.role") == "final"]
    assert [r.info.status for r in finals] == ["FINISHED"] * 2  # trained again, kept
