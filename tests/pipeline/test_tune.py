"""The search over a pipeline's parameters, on a tiny project (a step that scores its
parameters in milliseconds), with a real MLflow store and a real Optuna study."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shipml.config import load_config
from shipml.errors import ConfigError, TuneError
from shipml.pipeline.budget import SearchStopped, Stopper, parse_duration
from shipml.pipeline.context import (
    RunContext,
    activate,
    deactivate,
    report_intermediate,
    trial_var,
    uninterrupted,
)
from shipml.pipeline.study import redact, storage_url
from shipml.pipeline.trials import SearchResult, TrialRecord, _elapsed
from shipml.pipeline.tune import run_search
from shipml.tracking import tracker_for

PIPELINE = """
import time
from shipml import log_metrics, pipeline, report_intermediate, step

@step
def score(x: float = 0.5, depth: int = 3, pause: float = 0.0, fail: bool = False):
    if fail:
        raise RuntimeError("asked to fail")
    end = time.monotonic() + pause
    while time.monotonic() < end:  # Python code: a deadline can stop it
        time.sleep(0.01)
    value = -((x - 0.3) ** 2) - depth * 0.001
    for i in range(3):
        report_intermediate(value, i)
    return log_metrics({"objective": value, "holdout": value / 2})

@pipeline
def search_me(x: float = 0.5, depth: int = 3, pause: float = 0.0, fail: bool = False,
              seed: int = 1):
    score(x=x, depth=depth, pause=pause, fail=fail)
"""

TOML = """
[project]
name = "tiny"

[tune]
metric = "objective"
direction = "maximize"
seed = 7
fixed = ["seed", "pause", "fail"]

[tune.space]
x = { type = "float", low = 0.0, high = 1.0 }
depth = { type = "int", low = 1, high = 9 }
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store (and study storage) for the module: each test has its own
    experiment and study in it, and none pays for creating the database."""
    return tmp_path_factory.mktemp("store")


_made = iter(range(10_000))


def make(store: Path, tmp_path: Path, toml: str = TOML, params: str = "") -> Path:
    root = tmp_path / "tiny"
    root.mkdir()
    n = next(_made)
    (root / "pipeline.py").write_text(PIPELINE, encoding="utf-8")
    tracking = f'[tracking]\nuri = "sqlite:///{store}/mlflow.db"\nexperiment = "tiny-{n}"\n'
    toml = toml.replace("[tune]\n", f'[tune]\nstudy = "tiny-{n}"\n', 1)
    (root / "shipml.toml").write_text(tracking + toml + params, encoding="utf-8")
    return root


def search(
    root: Path, *, trials: int = 0, deadline: float | None = None, progress: Any = None
) -> SearchResult:
    config = load_config(root)
    with Stopper(deadline) as stopper:
        return run_search(config, stopper=stopper, trials=trials, progress=progress)


def test_the_search_starts_from_the_defaults_and_resumes(store: Path, tmp_path: Path) -> None:
    root = make(store, tmp_path)
    first = search(root, trials=4)
    assert [t.number for t in first.trials] == [0, 1, 2, 3]
    assert first.trials[0].params == {"x": 0.5, "depth": 3}  # the defaults come first
    assert first.defaults is first.trials[0]
    assert first.best is not None and first.best.value == max(t.value or -9 for t in first.complete)
    assert first.untuned == [] and first.fixed == ["fail", "pause", "seed"]
    again = search(root, trials=2)  # the same study, the same search run
    assert again.parent_run_id == first.parent_run_id
    assert [t.number for t in again.trials] == [0, 1, 2, 3, 4, 5]
    tracker = tracker_for(load_config(root))
    runs = tracker.client.search_runs([tracker.experiment_id()])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first.parent_run_id]
    assert len(children) == 6
    assert {r.data.tags["shipml.tune.trial"] for r in children} == {str(i) for i in range(6)}
    assert all(r.data.params["seed"] == "1" for r in children)  # fixed: never searched
    history = tracker.client.get_metric_history(first.parent_run_id, "best_objective")
    assert [m.step for m in history] == list(range(1, len(history) + 1))


def test_a_resumed_search_does_not_draw_the_trials_it_drew_before(
    store: Path, tmp_path: Path
) -> None:
    # Each session seeded its sampler with [tune] seed: a resumed study (or a worker of
    # --jobs) drew again x=0.0763, depth=8 then x=0.438, depth=7, trial after trial
    root = make(store, tmp_path)
    first = search(root, trials=3)
    again = search(root, trials=3)
    drawn = [tuple(t.params.items()) for t in first.trials[1:]]
    redrawn = [tuple(t.params.items()) for t in again.trials[3:]]
    assert len(redrawn) == 3 and not set(redrawn) & set(drawn)


def test_the_deadline_stops_the_running_step(store: Path, tmp_path: Path) -> None:
    root = make(store, tmp_path)
    search(root, trials=1)  # the stores exist: the next search starts at once
    with (root / "shipml.toml").open("a") as fh:
        fh.write("\n[pipeline.params]\npause = 30.0\n")
    t0 = time.monotonic()
    result = search(root, deadline=t0 + 2.0)
    took = time.monotonic() - t0
    assert result.stopped_by == "budget"
    assert took < 10  # not the 30 s the step wanted
    trial = result.trials[-1]
    assert trial.state == "stopped" and trial.number == 1
    assert result.best is not None and result.best.number == 0
    run = tracker_for(load_config(root)).get_run(trial.run_id)
    assert run.info.status == "KILLED"


def test_sigterm_stops_the_search_between_or_inside_steps(store: Path, tmp_path: Path) -> None:
    root = make(store, tmp_path, params="\n[pipeline.params]\npause = 0.5\n")

    def progress(state: Any) -> None:
        if state.done == 2 and state.running is not None:  # inside the third trial
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    result = search(root, progress=progress)
    assert result.stopped_by == "signal SIGTERM"
    assert len(result.complete) == 2  # the trials before the signal are kept
    assert result.trials[-1].state == "stopped"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


class _SignalledTrial:
    """A trial whose database write is where SIGTERM arrives."""

    def __init__(self) -> None:
        self.written: list[int] = []

    def report(self, value: float, step: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode
        self.written.append(step)  # the rest of the write (a commit, a lock released)

    def should_prune(self) -> bool:
        return False


def test_a_stop_waits_for_the_database_write_it_arrives_in(tmp_path: Path) -> None:
    # Raised half-way through a write, the stop once left SQLite's write lock held, and
    # the search's last write failed after 60 s: "database is locked".
    trial, ctx = _SignalledTrial(), RunContext(None, None, {}, tmp_path)  # type: ignore[arg-type]
    trial_token, ctx_token = trial_var.set(trial), activate(ctx)
    try:
        with Stopper(None) as stopper, pytest.raises(SearchStopped):
            report_intermediate(0.5, 7)
    finally:
        deactivate(ctx_token)
        trial_var.reset(trial_token)
    assert trial.written == [7]  # the write finished, then the step stopped
    assert stopper.reason == "signal SIGTERM"


class _QuietTrial(_SignalledTrial):
    def report(self, value: float, step: int) -> None:
        self.written.append(step)


class _FailingTrial(_SignalledTrial):
    def report(self, value: float, step: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        raise RuntimeError("the database went away")


def test_a_write_that_fails_after_a_stop_raises_its_own_error_and_leaves_no_stop_behind(
    tmp_path: Path,
) -> None:
    ctx = RunContext(None, None, {}, tmp_path)  # type: ignore[arg-type]
    ctx_token = activate(ctx)
    try:
        with Stopper(None) as stopper:
            token = trial_var.set(_FailingTrial())
            with pytest.raises(RuntimeError, match="went away"):
                report_intermediate(0.5, 1)
            trial_var.reset(token)
            assert stopper.reason == "signal SIGTERM"  # the next check stops the search
            with pytest.raises(SearchStopped):
                stopper.check()
            token = trial_var.set(_QuietTrial())
            report_intermediate(0.5, 2)  # nothing stale is raised at the next write
            trial_var.reset(token)
    finally:
        deactivate(ctx_token)


def test_another_threads_write_does_not_hold_back_the_main_threads_stop(
    tmp_path: Path,
) -> None:
    inside, release = threading.Event(), threading.Event()

    def write() -> None:
        with uninterrupted():
            inside.set()
            release.wait(10)

    writer = threading.Thread(target=write)
    ctx_token = activate(RunContext(None, None, {}, tmp_path))  # type: ignore[arg-type]
    try:
        with Stopper(None):
            writer.start()
            assert inside.wait(10)
            with pytest.raises(SearchStopped):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here, in the main thread
    finally:
        deactivate(ctx_token)
        release.set()
        writer.join()


def test_the_pruner_stops_poor_trials(store: Path, tmp_path: Path) -> None:
    result = search(make(store, tmp_path), trials=16)
    states = {t.state for t in result.trials}
    assert "pruned" in states and "complete" in states


def test_a_pipeline_that_always_fails_stops_the_search(store: Path, tmp_path: Path) -> None:
    root = make(store, tmp_path, params="\n[pipeline.params]\nfail = true\n")
    with pytest.raises(TuneError, match=r"first trials all failed.*asked to fail"):
        search(root)
    # The search's run is ended FAILED, not left RUNNING; the failed trials are kept.
    tracker = tracker_for(load_config(root))
    runs = tracker.client.search_runs([tracker.experiment_id()])
    (parent,) = [r for r in runs if r.data.tags.get("shipml.tune.role") == "search"]
    assert parent.info.status == "FAILED"
    assert {r.info.status for r in runs if r is not parent} == {"FAILED"}
    toml = root / "shipml.toml"  # fixed, the same study resumes where it was
    toml.write_text(toml.read_text().replace("fail = true", "fail = false"))
    resumed = search(root, trials=1)
    assert resumed.parent_run_id == parent.info.run_id
    assert [t.state for t in resumed.trials] == ["failed"] * 3 + ["complete"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"objective"', '"nope"', "logged no metric 'nope'"),
        ("x = {", "zz = {", "'zz', which is not a pipeline parameter"),
        ("low = 1, high = 9", "low = 5, high = 9", "default of 'depth' \\(3\\) lies outside"),
        ('metric = "objective"', 'metric = ""', "metric is not set"),
        ("[tune.space]", "[tune.nothing]", "space\\] is empty"),
        # a fixed name that is no parameter, or is searched, was silently dropped
        ('"pause", "fail"]', '"pause", "fail", "sed"]', "fixed names 'sed', which is not a par"),
        ('"pause", "fail"]', '"pause", "fail", "x"]', "fixed names 'x', which is searched too"),
        # the search stopped with a PipelineError at the first trial that drew such a value
        (
            'depth = { type = "int"',
            'depth = { type = "float"',
            "give 1.0 \\(float\\), but 'depth' is int",
        ),
        (
            'x = { type = "float", low = 0.0, high = 1.0 }',
            'x = { type = "categorical", choices = [0.5, "a"] }',
            "give 'a' \\(str\\), but 'x' is float",
        ),
    ],
)
def test_a_search_that_cannot_run_says_why(
    store: Path, tmp_path: Path, old: str, new: str, message: str
) -> None:
    toml = TOML.replace(old, new, 1)
    if new == "[tune.nothing]":
        toml = (
            toml.replace("[tune.nothing]", "")
            .replace("x = {", "# x = {")
            .replace("depth = {", "# depth = {")
        )
    with pytest.raises(TuneError, match=message):
        search(make(store, tmp_path, toml), trials=1)


def test_a_damaged_study_file_says_what_to_do_with_it(store: Path, tmp_path: Path) -> None:
    # the hint was "check [tune] storage", as if a setting were wrong
    damaged = tmp_path / "optuna.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x17" * 5000)
    toml = TOML.replace("[tune]\n", f'[tune]\nstorage = "sqlite:///{damaged}"\n', 1)
    with pytest.raises(TuneError, match="cannot open the study storage") as err:
        search(make(store, tmp_path, toml), trials=1)
    assert f"the file {damaged} is damaged" in (err.value.hint or "")
    assert "move it aside (it holds the study's trials)" in (err.value.hint or "")
    assert damaged.stat().st_size == 5016  # left as it was: nothing lost


def test_a_study_name_is_checked(store: Path, tmp_path: Path) -> None:
    config = load_config(make(store, tmp_path))
    with Stopper(None) as stopper, pytest.raises(TuneError, match="invalid study name"):
        run_search(config, stopper=stopper, study_name="../../etc/passwd")


def test_a_study_keeps_its_objective(store: Path, tmp_path: Path) -> None:
    root = make(store, tmp_path)
    search(root, trials=1)
    toml = (root / "shipml.toml").read_text().replace('"maximize"', '"minimize"')
    (root / "shipml.toml").write_text(toml)
    with pytest.raises(TuneError, match=r"made to maximize .objective.; .tune. now asks"):
        search(root, trials=1)


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60), ("10m", 600), ("1h30m", 5400), ("90", 90), ("1.5h", 5400)]
)
def test_budgets(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0s", "-5m", "10x", "1e999s", "9999h", "m", "1h" * 40, "60 s;rm -rf /", "nan"]
)
def test_a_bad_budget_is_a_clear_error(text: str) -> None:
    with pytest.raises(TuneError, match=r"budget|out of range"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{ type = "int", low = 5, high = 1 }', "low < high"),
        ('{ type = "float", low = 0, high = 1, log = true }', "log scale needs low > 0"),
        ('{ type = "float", low = nan, high = 1 }', "finite"),
        ('{ type = "float", low = 0, high = inf }', "finite"),
        ('{ type = "int", low = 0.5, high = 3 }', "whole numbers"),
        ('{ type = "int", low = 1, high = 9, step = 0.5 }', "whole step"),
        ('{ type = "int", low = 1, high = 9, step = 2.5 }', "whole step"),
        ('{ type = "float", low = 0, high = 1, step = 5 }', "wider than the range"),
        ('{ type = "int", low = 1, high = 9, step = 0 }', "step"),
        ('{ type = "categorical", choices = [] }', "non-empty"),
        ('{ type = "categorical", low = 1, choices = [1] }', "not low/high"),
        ('{ type = "int", choices = [1, 2] }', "not choices"),
        ('{ type = "normal", low = 0, high = 1 }', "type"),
        ('{ type = "int", low = [1], high = 3 }', "low"),
        ('{ type = "categorical", choices = [' + ", ".join(["1"] * 1001) + "] }", "1000"),
        # Optuna keeps the first of equal choices: a trial that drew true was recorded
        # (and its best trial trained again) with 1
        ('{ type = "categorical", choices = [3, 1, true] }', "choices 1 and True are equal"),
        ('{ type = "categorical", choices = [3, 3.0] }', "choices 3 and 3.0 are equal"),
    ],
)
def test_a_bad_space_is_a_config_error(
    store: Path, tmp_path: Path, entry: str, message: str
) -> None:
    root = make(store, tmp_path, TOML.replace('{ type = "int", low = 1, high = 9 }', entry))
    with pytest.raises(ConfigError, match=message):
        load_config(root)


def test_search_time_leaves_out_the_gaps_between_sessions() -> None:
    attrs = {
        "shipml.session.a": [100.0, 160.0],
        "shipml.session.b": [1000.0, None],  # still running, or crashed
        "other": [1.0, 2.0],
    }
    assert _elapsed(150.0, attrs) == 50.0
    assert _elapsed(1030.0, attrs) == 90.0


def test_the_curve_is_the_best_so_far_after_each_finished_trial() -> None:
    def trial(n: int, state: str, value: float | None, at: float) -> TrialRecord:
        return TrialRecord(n, state, {}, value, None, {}, 1.0, at, at - 100)

    result = SearchResult(
        "s",
        "",
        "m",
        "minimize",
        "run",
        [
            trial(0, "complete", 3.0, 101),
            trial(1, "pruned", None, 102),
            trial(2, "complete", 1.0, 104),
            trial(3, "complete", 2.0, 105),
        ],
        None,
        None,
        5.0,
        4,
        "budget",
    )
    assert [(p["trials"], p["elapsed"], p["best"]) for p in result.curve()] == [
        (1, 1, 3.0),
        (2, 2, 3.0),
        (3, 4, 1.0),
        (4, 5, 1.0),
    ]


def test_the_study_follows_the_mlflow_store(store: Path, tmp_path: Path) -> None:
    root = make(store, tmp_path)
    config = load_config(root)
    assert storage_url(config) == f"sqlite:///{store / 'optuna.db'}"  # beside mlflow.db
    pg = "postgresql+psycopg://u:secret@db:5432/mlflow"
    config.tracking.uri = pg
    assert storage_url(config) == pg  # the same database (schema "optuna")
    assert "secret" not in redact(pg)
    config.tracking.uri = "http://mlflow.example:5000"
    assert storage_url(config).endswith(".shipml/optuna.db")
    config.tune.storage = "sqlite:////elsewhere/s.db"
    assert storage_url(config) == "sqlite:////elsewhere/s.db"
    assert math.isfinite(parse_duration("1s"))
