"""The search over a pipeline's parameters (`shipml tune`), with Optuna.

Each trial is one pipeline run (cached: only the steps whose parameters change run
again), tracked as a child MLflow run of the search's parent run. The study lives next
to the MLflow store, so a search stopped by its budget, Ctrl-C, SIGTERM or a crash goes
on where it was when it is started again. The sampler is TPE, seeded, with the
pipeline's default parameters as its first trial; a step that reports intermediate
scores (``report_intermediate``) lets the median pruner stop a poor trial early.

The budget is kept by the clock, not by counting trials: when it ends, the trial that
is running is stopped inside its step (``RunStopped``, the run ends ``KILLED``). What
happens with the best trial (packaging, tests, the ``challenger`` alias) is the
session's work (``shipml.project.tune``).
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import StepFailed, TuneError
from shipml.pipeline.budget import SearchStopped, Stopper
from shipml.pipeline.context import TrialPruned, trial_var
from shipml.pipeline.loading import load_pipeline
from shipml.pipeline.record import end_failed
from shipml.pipeline.runner import run_pipeline
from shipml.pipeline.space import check_space, suggest
from shipml.pipeline.study import open_storage, redact, storage_url
from shipml.pipeline.trials import (
    ATTR_SESSION,
    SearchResult,
    TrialRecord,
    search_result,
    trial_record,
)
from shipml.tracking import Tracker, tracker_for

ATTR_PARENT = "shipml.parent_run"
ATTR_METRIC = "shipml.metric"
PROCESS = f"{socket.gethostname()}:{os.getpid()}"  # which worker ran a trial
STUDY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class Progress:
    """What a progress display shows; updated after every trial."""

    study: str
    metric: str
    deadline: float | None
    done: int = 0
    pruned: int = 0
    failed: int = 0
    best: float | None = None
    best_trial: int | None = None
    running: int | None = None
    last: TrialRecord | None = None


# -- the search ------------------------------------------------------------------------


class _TrialReporter:
    """The pipeline reporter of a trial: records the run id and stops between steps."""

    def __init__(self, stopper: Stopper, trial: Any) -> None:
        self.stopper, self.trial = stopper, trial

    def pipeline_started(self, name: str, run_id: str, steps: list[str]) -> None:
        self.trial.set_user_attr("run_id", run_id)

    def step_started(self, name: str) -> None:
        self.stopper.check()

    def step_finished(self, name: str, status: str, seconds: float, note: str = "") -> None:
        pass


def run_search(
    config: ProjectConfig,
    *,
    stopper: Stopper,
    trials: int = 0,
    study_name: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    tracker: Tracker | None = None,
    worker: bool = False,
) -> SearchResult:
    """Run trials until the stopper says stop (or ``trials`` trials ran in this session);
    returns every trial of the study and the best so far."""
    tracker = tracker or tracker_for(config)
    name, url, defaults, study, created = _prepare(config, study_name)
    parent = _parent_run(study, created, tracker, config, name, worker)
    if created:
        study.enqueue_trial({k: defaults[k] for k in config.tune.space}, skip_if_exists=True)
    search = _Search(
        config,
        stopper,
        tracker,
        parent,
        Progress(name, config.tune.metric, stopper.deadline),
        progress,
    )
    session = f"{ATTR_SESSION}{uuid.uuid4().hex[:12]}"
    started_at, t0 = time.time(), time.monotonic()
    study.set_user_attr(session, [started_at, None])
    try:
        try:
            stopped_by = search.optimize(study, trials)
        finally:
            study.set_user_attr(session, [started_at, time.time()])
        failures = search.failures
        if len(failures) >= 3 and not any(t.state.name == "COMPLETE" for t in study.trials):
            raise TuneError(
                f"the first trials all failed; the last: {failures[-1][:300]}",
                hint="fix the pipeline (`shipml run` shows the step's traceback), then tune again",
            )
    except BaseException as exc:
        if not worker:  # the lead's search run: FAILED, not RUNNING forever (a resume
            end_failed(tracker, parent, exc)  # marks it RUNNING again)
        raise
    if stopper.reason and stopped_by == "trials":
        stopped_by = stopper.reason
    elif stopper.remaining == 0 and stopped_by == "trials":
        stopped_by = "budget"
    return search_result(
        study,
        config,
        name,
        redact(url),
        parent,
        defaults,
        search.session_trials,
        time.monotonic() - t0,
        stopped_by,
    )


class _Search:
    """One session of a search: the objective (one pipeline run per trial) and what
    happens after each trial (progress, the parent run's best-so-far, when to stop)."""

    def __init__(
        self,
        config: ProjectConfig,
        stopper: Stopper,
        tracker: Tracker,
        parent: str,
        state: Progress,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        self.config, self.stopper, self.tracker, self.parent = config, stopper, tracker, parent
        self.state, self.progress = state, progress
        self.failures: list[str] = []
        self.session_trials = 0

    def optimize(self, study: Any, trials: int) -> str:
        """Run the trials; returns what stopped them (``trials`` when Optuna returned)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.stopper.check()  # the budget may be spent before the first trial
                study.optimize(
                    self.objective,
                    n_trials=trials or None,
                    catch=(StepFailed,),
                    callbacks=[self.after_trial],
                    gc_after_trial=False,
                )
            except SearchStopped:
                # Not the exception's text: raised inside a codec, Python rewrites it.
                return self.stopper.reason or "budget"
        return "trials"

    def objective(self, trial: Any) -> float:
        import optuna

        tune = self.config.tune
        self.stopper.check()
        self.session_trials += 1
        params = {n: suggest(trial, n, spec) for n, spec in tune.space.items()}
        self.state.running = trial.number
        if self.progress:
            self.progress(self.state)
        token = trial_var.set(trial)
        trial_tags = {
            "mlflow.parentRunId": self.parent,
            "shipml.tune.study": self.state.study,
            "shipml.tune.trial": str(trial.number),
            "shipml.tune.process": PROCESS,
        }
        try:
            result = run_pipeline(
                self.config,
                params=params,
                register=False,
                reporter=_TrialReporter(self.stopper, trial),
                tracker=self.tracker,
                tags=trial_tags,
            )
        except TrialPruned as exc:
            raise optuna.TrialPruned(str(exc)) from None
        except StepFailed as exc:
            trial.set_user_attr("error", exc.message[:500])
            self.failures.append(exc.message)
            raise
        finally:
            trial_var.reset(token)
        self.failures.clear()
        trial.set_user_attr("metrics", result.metrics)
        return _objective_value(tune.metric, result.metrics)

    def after_trial(self, study: Any, frozen: Any) -> None:
        state, metric = self.state, self.config.tune.metric
        record = trial_record(frozen, study)
        state.running, state.last = None, record
        state.done += record.state == "complete"
        state.pruned += record.state == "pruned"
        state.failed += record.state in ("failed", "stopped")
        try:
            best = study.best_trial
            state.best, state.best_trial = float(best.value), best.number
        except ValueError:
            pass
        if record.state == "complete" and state.best is not None:
            complete = study.get_trials(deepcopy=False, states=(frozen.state,))
            self.tracker.log_metrics(
                self.parent, {f"best_{metric}": state.best}, step=len(complete)
            )
        if self.progress:
            self.progress(state)
        if len(self.failures) >= 3 or self.stopper.reason or self.stopper.remaining == 0:
            study.stop()


def _objective_value(metric: str, metrics: dict[str, float]) -> float:
    if metric not in metrics:
        raise TuneError(
            f"the pipeline logged no metric {metric!r} (it logged: "
            f"{', '.join(sorted(metrics)) or 'none'})",
            hint="set [tune] metric to one of those, or log it with shipml.log_metrics",
        )
    value = float(metrics[metric])
    if not math.isfinite(value):
        raise StepFailed("objective", f"the objective {metric} is {value}")
    return value


def _prepare(
    config: ProjectConfig, study_name: str | None
) -> tuple[str, str, dict[str, Any], Any, bool]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tune = config.tune
    pipe = load_pipeline(config)
    defaults = pipe.build(config.pipeline.params).params
    check_space(config, defaults, pipe)
    name = study_name or tune.study or config.project.name
    if not STUDY_RE.match(name):
        raise TuneError(
            f"invalid study name {name[:60]!r}",
            hint="use letters, digits, '_', '.' or '-' (at most 100), starting with a letter",
        )
    url = storage_url(config)
    study, created = _open_study(
        optuna, open_storage(url), name, tune.direction, tune.metric, tune.seed, tune.pruner
    )
    return name, url, defaults, study, created


def load_search(
    config: ProjectConfig, session: SearchResult, tracker: Tracker, study_name: str | None
) -> SearchResult:
    """The study as it is now (with the trials of other processes), keeping what
    ``session`` says of this process's session."""
    name, url, defaults, study, _ = _prepare(config, study_name)
    parent = _parent_run(study, False, tracker, config, name, True)
    return search_result(
        study,
        config,
        name,
        redact(url),
        parent,
        defaults,
        session.session_trials,
        session.seconds,
        session.stopped_by,
    )


def _open_study(
    optuna: Any, storage: Any, name: str, direction: str, metric: str, seed: int, prune: str
) -> tuple[Any, bool]:
    sampler = optuna.samplers.TPESampler(seed=seed or None, n_startup_trials=5)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        if prune == "median"
        else optuna.pruners.NopPruner()
    )
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction=direction, sampler=sampler, pruner=pruner
        )
        study.set_user_attr(ATTR_METRIC, metric)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        # A resumed study, or a worker joining one: with the study's seed it would draw
        # again the very trials the first session (or the other workers) drew.
        study.sampler.reseed_rng()
    had = study.direction.name.lower()
    before = study.user_attrs.get(ATTR_METRIC, metric)
    if had != direction or before != metric:
        raise TuneError(
            f"study {name!r} was made to {had} {before!r}; [tune] now asks to {direction} "
            f"{metric!r}",
            hint="start a new study for the new objective: shipml tune --study NEW_NAME",
        )
    return study, False


def _parent_run(
    study: Any, created: bool, tracker: Tracker, config: ProjectConfig, name: str, worker: bool
) -> str:
    """The search's MLflow run: made by whoever created the study; the others wait for it."""
    if created:
        tags = {"shipml.tune.study": name, "shipml.tune.role": "search"}
        run_id = tracker.start_run(f"tune-{name}", tags)
        space = {
            f"space.{k}": v.model_dump(exclude_none=True) for k, v in config.tune.space.items()
        }
        tracker.log_params(
            run_id, {"metric": config.tune.metric, "direction": config.tune.direction, **space}
        )
        study.set_user_attr(ATTR_PARENT, run_id)
        return run_id
    for _ in range(300):
        run_id = study.user_attrs.get(ATTR_PARENT)
        if run_id:
            if not worker:
                tracker.client.update_run(run_id, status="RUNNING")
            return str(run_id)
        time.sleep(0.1)
    raise TuneError(f"study {name!r} has no search run recorded", hint="start a new study")
