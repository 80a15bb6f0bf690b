"""`shipml tune`: the anytime contract of a search within a budget.

At every moment the study has a best-so-far. When the budget ends, or on Ctrl-C or
SIGTERM, the search stops (the running trial too) and the best trial is wrapped up:
trained again from scratch (the reproducibility check: the same parameters and seed
must give the same metrics within ``[tune] reproducibility_tolerance``), registered,
tested with the ``[gates]`` suites and pointed at by ``challenger``. The tuning record
and the reproducibility check are written on the model version (`shipml score` reads
them); the completeness-versus-time curve goes to the search's MLflow run.

``jobs`` above 1 starts that many minus one worker processes (`shipml tune --worker`)
sharing the study through its storage, as Kubernetes worker Jobs do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import TuneError
from shipml.pipeline.budget import Stopper, no_signals, parse_duration
from shipml.pipeline.record import end_failed
from shipml.pipeline.runner import RunResult, run_pipeline
from shipml.pipeline.trials import SearchResult, TrialRecord
from shipml.pipeline.tune import Progress, load_search, run_search
from shipml.testing.score import TAG_REPRODUCIBILITY
from shipml.testing.score import TAG_TUNE_RECORD as TAG_TUNE
from shipml.tracking import Registry, Tracker, VersionInfo, tracker_for

WORKER_GRACE_S = 30.0


@dataclass
class TuneOutcome:
    search: SearchResult
    chosen: TrialRecord | None = None
    note: str = ""  # why the chosen trial is not the best, if it is not
    final: RunResult | None = None
    version: VersionInfo | None = None
    reproducibility: dict[str, Any] = field(default_factory=dict)
    tests: Any = None  # shipml.testing.runner.TestRun
    search_seconds: float = 0.0
    wrapup_seconds: float = 0.0
    worker_codes: list[int] = field(default_factory=list)


def tune(
    config: ProjectConfig,
    *,
    budget: str | None = None,
    trials: int | None = None,
    jobs: int = 1,
    study: str | None = None,
    worker: bool = False,
    deadline: float | None = None,
    started: float | None = None,
    progress: Callable[[Progress], None] | None = None,
    test: bool = True,
) -> TuneOutcome:
    """Search until the budget ends (``deadline``: an epoch time instead, for workers
    started by another process), then package, test and register the best trial."""
    if jobs < 1 or jobs > 64:
        raise TuneError(f"--jobs {jobs} is out of range", hint="give 1 to 64 parallel trials")
    t0 = started if started is not None else time.monotonic()
    if deadline is not None:
        end = t0 + max(0.0, deadline - time.time())
    else:
        end = t0 + parse_duration(budget or config.tune.budget)
    count = config.tune.trials if trials is None else trials
    tracker = tracker_for(config)
    workers = [] if worker else _start_workers(config, jobs - 1, study, end, count)
    stopper = Stopper(end)
    failed = True
    try:
        with stopper:
            search = run_search(
                config,
                stopper=stopper,
                trials=count,
                study_name=study,
                progress=progress,
                tracker=tracker,
                worker=worker,
            )
        failed = False
    finally:
        signalled = failed or (stopper.reason or "").startswith("signal")
        codes = _stop_workers(workers, forward=signalled) if workers else []
    outcome = TuneOutcome(search, worker_codes=codes)
    # The budget counts from the command's start (imports and loading included).
    outcome.search_seconds = search.seconds = time.monotonic() - t0
    if workers:
        outcome.search = load_search(config, search, tracker, study)
    if worker:
        return outcome
    begun = time.monotonic()
    with no_signals():
        _wrap_up(config, outcome, tracker, test)
    outcome.wrapup_seconds = time.monotonic() - begun
    return outcome


def _start_workers(
    config: ProjectConfig, n: int, study: str | None, end: float, trials: int
) -> list[subprocess.Popen[bytes]]:
    logs = config.path(".shipml/tune")
    logs.mkdir(parents=True, exist_ok=True)
    until = time.time() + (end - time.monotonic())
    procs = []
    for i in range(n):
        cmd = [sys.executable, "-m", "shipml", "-C", str(config.root), "tune", "--worker"]
        cmd += ["--deadline", f"{until:.3f}"]
        cmd += ["--study", study] if study else []
        cmd += ["--trials", str(trials)] if trials else []
        with (logs / f"worker-{i + 1}.log").open("wb") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _stop_workers(procs: list[subprocess.Popen[bytes]], *, forward: bool) -> list[int]:
    """Wait for the workers (they keep the same deadline); after a signal or an error,
    pass SIGTERM on to them."""
    limit = time.monotonic() + WORKER_GRACE_S
    for proc in procs:
        if forward and proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [int(p.returncode) for p in procs]


def choose(config: ProjectConfig, search: SearchResult) -> tuple[TrialRecord | None, str]:
    """The trial to register: the best, unless ``[tune] holdout_metric`` shows it worse
    than the defaults (trial 0) on the held-out rows."""
    best, first = search.best, search.defaults
    metric = config.tune.holdout_metric
    if best is None or first is None or first.state != "complete" or not metric:
        return best, ""
    if best.number == first.number:
        return best, ""
    b, d = best.metrics.get(metric), first.metrics.get(metric)
    if b is None or d is None:
        return best, ""
    worse = b < d if search.direction == "maximize" else b > d
    if worse:
        return first, (
            f"trial {best.number} has the best {search.metric} but a worse hold-out {metric} "
            f"than the defaults ({b:.4g} against {d:.4g}): the defaults (trial 0) are registered"
        )
    return best, ""


def reproducibility(trial: TrialRecord, again: RunResult, tolerance: float) -> dict[str, Any]:
    """Two runs with the same parameters and seed: do their metrics agree?"""
    common = sorted(set(trial.metrics) & set(again.metrics))
    diffs = {k: abs(float(trial.metrics[k]) - float(again.metrics[k])) for k in common}
    worst = max(diffs.values(), default=0.0)
    return {
        "status": "passed" if common and worst <= tolerance else "failed",
        "tolerance": tolerance,
        "max_difference": worst,
        "metrics": {k: [trial.metrics[k], again.metrics[k]] for k in common},
        "runs": [trial.run_id, again.run_id],
        "params": trial.params,
    }


def _wrap_up(config: ProjectConfig, outcome: TuneOutcome, tracker: Tracker, test: bool) -> None:
    search = outcome.search
    chosen, outcome.note = choose(config, search)
    outcome.chosen = chosen
    ended = False
    try:  # whatever stops the wrap-up (an error, Ctrl-C): the search's run ends FAILED
        if chosen is None:
            _finish_parent(config, tracker, search, "FAILED")
            ended = True
            raise _nothing_finished(search)
        tags = {
            "mlflow.parentRunId": search.parent_run_id,
            "shipml.tune.study": search.study,
            "shipml.tune.role": "final",
            "shipml.tune.trial": str(chosen.number),
        }
        registered = _register_chosen(config, outcome, chosen, tracker, test, tags)
        _finish_parent(config, tracker, search, "FINISHED")
        ended = True
    except BaseException as exc:  # not RUNNING forever (a Ctrl-C while the curve was drawn)
        if not ended:
            end_failed(tracker, search.parent_run_id, exc)
        raise
    if not registered:
        raise TuneError(
            "the best trial's run registered no model (its pipeline packages none)",
            hint="make a step return shipml.package_model(...)",
        )


def _nothing_finished(search: SearchResult) -> TuneError:
    took = [t.seconds for t in search.trials if t.seconds]
    typical = f" (a trial took about {sorted(took)[len(took) // 2]:.0f} s)" if took else ""
    return TuneError(
        f"no trial of study {search.study!r} finished within the budget{typical}: "
        "there is nothing to register",
        hint="give a larger --budget; the study keeps what was done, so running "
        "`shipml tune` again resumes it",
    )


def _register_chosen(
    config: ProjectConfig,
    outcome: TuneOutcome,
    chosen: TrialRecord,
    tracker: Tracker,
    test: bool,
    tags: dict[str, str],
) -> bool:
    """Train the chosen trial again, register, tag, test and point challenger at it;
    False if its pipeline registered no model."""
    search = outcome.search
    final = run_pipeline(
        config, params=chosen.params, use_cache=False, register=True, tracker=tracker, tags=tags
    )
    outcome.final = final
    outcome.reproducibility = reproducibility(chosen, final, config.tune.reproducibility_tolerance)
    version = final.model_version
    if version is None:
        return False
    registry = Registry(tracker)
    record = _record(search, chosen)
    registry.set_version_tag(version.name, version.version, TAG_TUNE, json.dumps(record))
    registry.set_version_tag(
        version.name,
        version.version,
        TAG_REPRODUCIBILITY,
        json.dumps(outcome.reproducibility, default=str),
    )
    if test:
        from shipml.testing.runner import run_tests

        outcome.tests = run_tests(config, version.ref, suites=config.gates.suites)
    outcome.version = _point_challenger(config, registry, version)
    return True


def _record(search: SearchResult, chosen: TrialRecord) -> dict[str, Any]:
    """The tuning record on the version: what was searched, how long, what won."""
    return {
        "study": search.study,
        "storage": search.storage,
        "parent_run": search.parent_run_id,
        "metric": search.metric,
        "direction": search.direction,
        "trial": chosen.number,
        "value": chosen.value,
        "params": chosen.params,
        "trials_complete": len(search.complete),
        "trials": len(search.trials),
        "searched": search.searched,
        "fixed": search.fixed,
        "untuned": search.untuned,
    }


def _point_challenger(
    config: ProjectConfig, registry: Registry, version: VersionInfo
) -> VersionInfo:
    """Point ``challenger`` at the tuned version, through the one promotion rule (the
    gates, when a project protects ``challenger``)."""
    from shipml.project.promotion import set_alias

    set_alias(config, version.name, version.version, "challenger")
    return registry.resolve(version.ref)


def _finish_parent(
    config: ProjectConfig, tracker: Tracker, search: SearchResult, status: str
) -> None:
    """The curve and the trials as artifacts of the search's run, then end it."""
    from shipml.report.charts import line_chart

    run = search.parent_run_id
    curve = search.curve()
    record = {
        "study": search.study,
        "metric": search.metric,
        "direction": search.direction,
        "curve": curve,
        "trials": [t.__dict__ for t in search.trials],
        "session": {
            "seconds": round(search.seconds, 3),
            "trials": search.session_trials,
            "stopped_by": search.stopped_by,
        },
    }
    tracker.log_text(run, json.dumps(record, indent=2, default=str), "tune/record.json")
    if curve:
        svg = line_chart(
            [
                ("search time (s)", [p["elapsed"] for p in curve]),
                ("trials finished", [p["trials"] for p in curve]),
            ],
            [p["best"] for p in curve],
            title=f"best {search.metric} so far",
        )
        tracker.log_text(run, svg, "tune/curve.svg")
    tracker.end_run(run, status)
