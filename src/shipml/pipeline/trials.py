"""The trials of a search as records (``TrialRecord``), and the search's result
(``SearchResult``: every trial, the best, the completeness-versus-time curve), read from an
Optuna study; and a finished search's record in MLflow (``read_record``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from shipml.config import ProjectConfig
from shipml.tracking import Tracker

ATTR_SESSION = "shipml.session."


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


_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}


def trial_record(t: Any, study: Any) -> TrialRecord:
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


def search_result(
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
    records = [trial_record(t, study) for t in study.get_trials(deepcopy=False)]
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
