"""The anytime contract on the template project, as a user meets it: `shipml tune` killed
with SIGTERM still leaves its best-so-far trained again, tested and registered as
challenger; started again it resumes the same study and keeps its budget.

One journey, paid once: the 60 s acceptance run is measured by
benchmarks/tune_budget.py."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from shipml.config import load_config
from shipml.templates import create_project
from shipml.tracking import Registry, tracker_for
from tests.conftest import SHIPML, shipml


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
    time.sleep(20)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
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

    again = shipml("tune", "--budget", "15s", "--no-test", cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"run {parent}" in again.stdout.replace("\n", "")  # the same study and search run
    numbers = sorted(int(r.data.tags["shipml.tune.trial"]) for r in _children(config, parent))
    assert numbers[-1] >= record["trials"]  # numbering goes on from the first session
    saved = tracker.client.download_artifacts(parent, "tune/record.json", str(tmp_path))
    history = json.loads(Path(saved).read_text())
    session = history["session"]
    assert session["stopped_by"] == "budget"
    assert 14.25 <= session["seconds"] <= 15.75  # the budget, kept to ±5%
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
