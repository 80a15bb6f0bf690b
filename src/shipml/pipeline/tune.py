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

import contextlib
import math
import os
import re
import signal
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shipml.config import ProjectConfig, TuneParam
from shipml.errors import StepFailed, TuneError
from shipml.pipeline.context import RunStopped, TrialPruned, current, trial_var
from shipml.pipeline.runner import load_pipeline, run_pipeline
from shipml.pipeline.study import open_storage, redact, storage_url
from shipml.tracking import Tracker, tracker_for

ATTR_PARENT = "shipml.parent_run"
ATTR_SESSION = "shipml.session."
ATTR_METRIC = "shipml.metric"
MAX_BUDGET_S = 7 * 24 * 3600.0
PROCESS = f"{socket.gethostname()}:{os.getpid()}"  # which worker ran a trial
STUDY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``10m``, ``1h30m``, ``1.5h``."""
    raw = str(text).strip().lower().replace(" ", "")
    match = _DURATION.match(raw) if raw and len(raw) <= 32 else None
    if not match or not any(match.groups()):
        raise TuneError(
            f"cannot read the budget {str(text)[:40]!r}",
            hint="write seconds, minutes or hours: 90s, 10m, 1h30m",
        )
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    seconds = h * 3600 + m * 60 + s
    if not 1.0 <= seconds <= MAX_BUDGET_S:
        raise TuneError(
            f"a budget of {seconds:g} s is out of range",
            hint="give at least 1s and at most 7 days (168h)",
        )
    return seconds


# -- stopping --------------------------------------------------------------------------


class SearchStopped(RunStopped):
    """The search's deadline passed or a signal asked it to stop."""


class Stopper:
    """The search's clock and its signals. When the deadline passes, or on SIGINT/SIGTERM,
    the running step is interrupted (``SearchStopped``); between steps the stop waits
    for the next step to start. A second signal aborts at once (``KeyboardInterrupt``).
    Signals and the timer are handled only in the main thread; elsewhere the deadline is
    checked between steps."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline  # time.monotonic()
        self.reason: str | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
                self._saved[sig] = signal.signal(sig, self._handle)
            if self.deadline is not None:
                signal.setitimer(signal.ITIMER_REAL, max(self.deadline - time.monotonic(), 1e-3))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in self._saved.items():
                signal.signal(sig, handler)
            self._saved.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGALRM:
            if self.deadline is not None and time.monotonic() < self.deadline - 0.01:
                signal.setitimer(signal.ITIMER_REAL, self.deadline - time.monotonic())
                return
            self.reason = self.reason or "budget"
        elif self.reason is not None and self.reason != "budget":
            raise KeyboardInterrupt  # a second Ctrl-C or SIGTERM: stop everything now
        else:
            self.reason = f"signal {signal.Signals(signum).name}"
        if current() is not None:  # inside a step's code: stop it there
            raise SearchStopped(self.reason)

    @property
    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """Raise ``SearchStopped`` if the search must stop (called between steps)."""
        if self.reason is None and self.deadline is not None and self.remaining == 0:
            self.reason = "budget"
        if self.reason is not None:
            raise SearchStopped(self.reason)


# -- the search space ------------------------------------------------------------------


def suggest(trial: Any, name: str, spec: TuneParam) -> Any:
    if spec.type == "categorical":
        return trial.suggest_categorical(name, list(spec.choices or []))
    low, high = float(spec.low or 0), float(spec.high or 0)
    if spec.type == "int":
        step = int(spec.step) if spec.step else 1
        return trial.suggest_int(name, int(low), int(high), step=step, log=spec.log)
    return trial.suggest_float(name, low, high, step=spec.step, log=spec.log)


def check_space(config: ProjectConfig, defaults: dict[str, Any]) -> None:
    """The space names pipeline parameters, and each default lies in its range."""
    tune = config.tune
    if not tune.space:
        raise TuneError(
            "[tune.space] is empty: there is nothing to search",
            hint='declare parameters, e.g. n_estimators = { type = "int", low = 50, high = 400 }',
        )
    if not tune.metric:
        raise TuneError(
            "[tune] metric is not set: the search needs an objective",
            hint='name a metric the pipeline logs, e.g. metric = "cv_accuracy"',
        )
    for name, spec in tune.space.items():
        if name not in defaults:
            raise TuneError(
                f"[tune.space] names {name!r}, which is not a pipeline parameter",
                hint=f"the pipeline's parameters: {', '.join(sorted(defaults))}",
            )
        value = defaults[name]
        if spec.type == "categorical":
            ok = value in (spec.choices or [])
        else:
            ok = isinstance(value, int | float) and float(spec.low or 0) <= value <= float(
                spec.high or 0
            )
        if not ok:
            raise TuneError(
                f"the default of {name!r} ({value!r}) lies outside its [tune.space] entry",
                hint="the search starts from the defaults: widen the range or add the choice",
            )


# -- records ---------------------------------------------------------------------------


@dataclass
class TrialRecord:
    number: int
    state: str  # complete | pruned | failed | stopped | running
    params: dict[str, Any]
    value: float | None
    run_id: str | None
    metrics: dict[str, float]
    seconds: float
    finished: float | None  # epoch seconds
    elapsed: float | None = None  # search time when it finished
    error: str = ""


@dataclass
class SearchResult:
    study: str
    storage: str  # password hidden
    metric: str
    direction: str
    parent_run_id: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    defaults: TrialRecord | None
    seconds: float  # this session
    session_trials: int
    stopped_by: str  # budget | trials | signal ...
    searched: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    untuned: list[str] = field(default_factory=list)

    @property
    def complete(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.state == "complete"]

    def curve(self) -> list[dict[str, float]]:
        """The completeness-versus-time curve: after each completed trial, the best value
        so far, the search time and the number of trials finished."""
        points: list[dict[str, float]] = []
        best: float | None = None
        ordered = sorted(
            (t for t in self.trials if t.finished is not None), key=lambda t: t.finished or 0
        )
        for done, t in enumerate(ordered, start=1):
            if t.state == "complete" and t.value is not None:
                better = best is None or (
                    t.value > best if self.direction == "maximize" else t.value < best
                )
                best = t.value if better else best
            if best is not None:
                points.append({"trials": done, "elapsed": t.elapsed or 0.0, "best": best})
        return points


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
    import optuna

    tune = config.tune
    tracker = tracker or tracker_for(config)
    name, url, defaults, study, created = _prepare(config, study_name)
    parent = _parent_run(study, created, tracker, config, name, worker)
    if created:
        study.enqueue_trial({k: defaults[k] for k in tune.space}, skip_if_exists=True)
    session = f"{ATTR_SESSION}{uuid.uuid4().hex[:12]}"
    started_at, t0 = time.time(), time.monotonic()
    study.set_user_attr(session, [started_at, None])
    state = Progress(name, tune.metric, stopper.deadline)
    failures: list[str] = []
    session_trials = 0

    def objective(trial: Any) -> float:
        nonlocal session_trials
        stopper.check()
        session_trials += 1
        params = {n: suggest(trial, n, spec) for n, spec in tune.space.items()}
        state.running = trial.number
        if progress:
            progress(state)
        token = trial_var.set(trial)
        trial_tags = {
            "mlflow.parentRunId": parent,
            "shipml.tune.study": name,
            "shipml.tune.trial": str(trial.number),
            "shipml.tune.process": PROCESS,
        }
        try:
            result = run_pipeline(
                config,
                params=params,
                register=False,
                reporter=_TrialReporter(stopper, trial),
                tracker=tracker,
                tags=trial_tags,
            )
        except TrialPruned as exc:
            raise optuna.TrialPruned(str(exc)) from None
        except StepFailed as exc:
            trial.set_user_attr("error", exc.message[:500])
            failures.append(exc.message)
            raise
        finally:
            trial_var.reset(token)
        failures.clear()
        trial.set_user_attr("metrics", result.metrics)
        if tune.metric not in result.metrics:
            raise TuneError(
                f"the pipeline logged no metric {tune.metric!r} (it logged: "
                f"{', '.join(sorted(result.metrics)) or 'none'})",
                hint="set [tune] metric to one of those, or log it with shipml.log_metrics",
            )
        value = float(result.metrics[tune.metric])
        if not math.isfinite(value):
            raise StepFailed("objective", f"the objective {tune.metric} is {value}")
        return value

    def after_trial(study_: Any, frozen: Any) -> None:
        record = _record(frozen, study_)
        state.running, state.last = None, record
        state.done += record.state == "complete"
        state.pruned += record.state == "pruned"
        state.failed += record.state in ("failed", "stopped")
        try:
            best = study_.best_trial
            state.best, state.best_trial = float(best.value), best.number
        except ValueError:
            pass
        if record.state == "complete" and state.best is not None:
            complete = study_.get_trials(deepcopy=False, states=(frozen.state,))
            tracker.log_metrics(parent, {f"best_{tune.metric}": state.best}, step=len(complete))
        if progress:
            progress(state)
        if len(failures) >= 3 or stopper.reason or stopper.remaining == 0:
            study_.stop()

    stopped_by = "trials"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            stopper.check()  # the budget may be spent before the first trial
            study.optimize(
                objective,
                n_trials=trials or None,
                catch=(StepFailed,),
                callbacks=[after_trial],
                gc_after_trial=False,
            )
        except SearchStopped:
            # Not the exception's text: raised inside a codec, Python rewrites it.
            stopped_by = stopper.reason or "budget"
        finally:
            study.set_user_attr(session, [started_at, time.time()])
    if len(failures) >= 3 and not any(t.state.name == "COMPLETE" for t in study.trials):
        raise TuneError(
            f"the first trials all failed; the last: {failures[-1][:300]}",
            hint="fix the pipeline (`shipml run` shows the step's traceback), then tune again",
        )
    if stopper.reason and stopped_by == "trials":
        stopped_by = stopper.reason
    elif stopper.remaining == 0 and stopped_by == "trials":
        stopped_by = "budget"
    return _result(
        study,
        config,
        name,
        redact(url),
        parent,
        defaults,
        session_trials,
        time.monotonic() - t0,
        stopped_by,
    )


def _prepare(
    config: ProjectConfig, study_name: str | None
) -> tuple[str, str, dict[str, Any], Any, bool]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tune = config.tune
    defaults = load_pipeline(config).build(config.pipeline.params).params
    check_space(config, defaults)
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
    return _result(
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


def read_record(tracker: Tracker, run_id: str) -> dict[str, Any] | None:
    """A search run's ``tune/record.json`` (its trials and curve), if it has one."""
    import json
    import tempfile
    from pathlib import Path

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = tracker.client.download_artifacts(run_id, "tune/record.json", tmp)
            return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except Exception:  # no such artifact, an unreachable store: no record
        return None


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


_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}


def _record(t: Any, study: Any) -> TrialRecord:
    state = _STATES.get(t.state.name, t.state.name.lower())
    error = str(t.user_attrs.get("error", ""))
    if state == "failed" and not error:
        state = "stopped"  # stopped by the deadline or a signal, not by its own failure
    finished = t.datetime_complete.timestamp() if t.datetime_complete else None
    seconds = (
        (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start
        else 0.0
    )
    return TrialRecord(
        number=t.number,
        state=state,
        params=dict(t.params),
        value=float(t.value) if t.value is not None else None,
        run_id=t.user_attrs.get("run_id"),
        metrics=dict(t.user_attrs.get("metrics") or {}),
        seconds=seconds,
        finished=finished,
        elapsed=_elapsed(finished, study.user_attrs) if finished else None,
        error=error,
    )


def _elapsed(when: float, attrs: dict[str, Any]) -> float:
    """Search time up to ``when``: the union of the sessions' intervals before it (time
    between sessions does not count)."""
    spans = sorted(
        (float(v[0]), float(v[1]) if v[1] else math.inf)
        for k, v in attrs.items()
        if k.startswith(ATTR_SESSION) and isinstance(v, list) and len(v) == 2
    )
    total, covered = 0.0, -math.inf
    for start, end in spans:
        start, end = max(start, covered), min(end, when)
        if end > start:
            total += end - start
            covered = end
    return total


def _result(
    study: Any,
    config: ProjectConfig,
    name: str,
    storage: str,
    parent: str,
    defaults: dict[str, Any],
    session_trials: int,
    seconds: float,
    stopped_by: str,
) -> SearchResult:
    records = [_record(t, study) for t in study.get_trials(deepcopy=False)]
    complete = [t for t in records if t.state == "complete" and t.value is not None]
    sign = 1 if config.tune.direction == "maximize" else -1
    best = max(complete, key=lambda t: (sign * (t.value or 0.0), -t.number), default=None)
    first = next((t for t in records if t.number == 0), None)
    searched = sorted(config.tune.space)
    fixed = sorted(set(config.tune.fixed) & set(defaults))
    untuned = sorted(set(defaults) - set(searched) - set(fixed))
    return SearchResult(
        study=name,
        storage=storage,
        metric=config.tune.metric,
        direction=config.tune.direction,
        parent_run_id=parent,
        trials=records,
        best=best,
        defaults=first,
        seconds=seconds,
        session_trials=session_trials,
        stopped_by=stopped_by,
        searched=searched,
        fixed=fixed,
        untuned=untuned,
    )


@contextlib.contextmanager
def no_signals() -> Iterator[None]:
    """While the best trial is packaged and tested: SIGTERM stops it like Ctrl-C (cleanup
    runs), and the search's timer is off."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    saved = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)
