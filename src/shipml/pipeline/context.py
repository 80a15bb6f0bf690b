"""What a running step can reach: the active run, for metrics and model packaging."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shipml.config import ProjectConfig
from shipml.data import DatasetStore, Snapshot, table_profile
from shipml.model import ModelPackage, build_package


@dataclass
class DatasetInput:
    """A dataset as a step sees it: the snapshot and its table."""

    snapshot: Snapshot
    store: DatasetStore
    _frame: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return self.snapshot.name

    @property
    def digest(self) -> str:
        return self.snapshot.digest

    def to_pandas(self) -> pd.DataFrame:
        """The snapshot's table (its digest verified on first read); a fresh copy each call."""
        if self._frame is None:
            self._frame = self.store.load(self.snapshot)
        return self._frame.copy()


@dataclass
class RunContext:
    config: ProjectConfig
    run_id: str | None
    lineage: dict[str, Any]
    workdir: Path
    step: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


class RunStopped(KeyboardInterrupt):
    """Raised into a running step to stop its run on purpose (a search's deadline, a
    signal, a pruned trial): not a failure of the step's code, so the run ends ``KILLED``
    and nothing is cached for the step. A ``KeyboardInterrupt``, so code that lets Ctrl-C
    through lets it through too."""


class TrialPruned(RunStopped):
    """The search's pruner stopped this trial (``report_intermediate``)."""


# The Optuna trial a run belongs to, when `shipml tune` runs it.
trial_var: ContextVar[Any] = ContextVar("shipml_trial", default=None)


def report_intermediate(value: float, step: int) -> None:
    """Report an intermediate score of the running trial (a cross-validation fold, an
    epoch), in the direction of `shipml tune`'s objective: the pruner may stop the trial
    here, when it is clearly worse than the others at the same step. Outside `shipml
    tune` it does nothing."""
    trial = trial_var.get()
    value = float(value)
    if trial is None or not math.isfinite(value):
        return
    with uninterrupted():  # writes to the study's database
        trial.report(value, int(step))
        prune = trial.should_prune()
    if prune:
        raise TrialPruned(f"pruned at step {step}")


# A stop raised into a step half-way through a database write can leave the connection
# holding SQLite's write lock: every later write then waits for it and fails ("database
# is locked"). Signals run in the main thread only, so plain module state suffices.
_uninterrupted = 0
_deferred: BaseException | None = None


def interrupt(exc: BaseException) -> None:
    """Raise ``exc`` into the running step (from a signal handler) now, or, inside
    ``uninterrupted()``, as soon as that section ends."""
    global _deferred
    if _uninterrupted:
        _deferred = _deferred or exc
        return
    raise exc


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A section a stop must not cut in half (a write to a database): ``interrupt``
    waits for its end. Signals reach the main thread only, so elsewhere it is nothing
    (a stop deferred for another thread's write would be raised in that thread)."""
    global _uninterrupted, _deferred
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _uninterrupted += 1
    try:
        yield
    except BaseException:
        if _uninterrupted == 1:  # the section's own error goes first; the stop is not
            _deferred = None  # lost: its reason stays set, and the next check raises it
        raise
    finally:
        _uninterrupted -= 1
    if not _uninterrupted and _deferred is not None:
        exc, _deferred = _deferred, None
        raise exc


_current: ContextVar[RunContext | None] = ContextVar("shipml_run_context", default=None)


def current() -> RunContext | None:
    return _current.get()


def log_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Log metrics to the pipeline's MLflow run (outside a run: only returns them)."""
    ctx = _current.get()
    clean = {str(k): float(v) for k, v in metrics.items()}
    if ctx is not None:
        ctx.metrics.update(clean)
    return clean


def log_metric(key: str, value: float) -> float:
    return log_metrics({key: value})[key]


def package_model(
    model: Any,
    X: pd.DataFrame,
    y: Any = None,
    *,
    train: pd.DataFrame | None = None,
    train_labels: Any = None,
) -> ModelPackage:
    """Package a fitted model as ONNX + signature + reference profile + lineage.

    ``X`` and ``y`` are the held-out rows it is validated on (kept in the package for
    `shipml test`); ``train``, the training rows, is kept only as row hashes (with
    ``train_labels``) so tests can find rows shared by both and rebuild the training
    set from the dataset. Inside a pipeline run the lineage (run id, dataset
    digests, git commit, package versions) and the parity tolerance come from the run and
    shipml.toml."""
    ctx = _current.get()
    if ctx is None:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="shipml-package-")) / "model"
        return build_package(
            model,
            X,
            y,
            path=path,
            reference_profile=table_profile(X),
            train=train,
            train_labels=train_labels,
        )
    path = ctx.workdir / f"{ctx.step}-package"
    return build_package(
        model,
        X,
        y,
        path=path,
        lineage={**ctx.lineage, "step": ctx.step},
        reference_profile=table_profile(X),
        tolerance=ctx.config.model.parity_tolerance,
        train=train,
        train_labels=train_labels,
    )


def activate(ctx: RunContext) -> Any:
    return _current.set(ctx)


def deactivate(token: Any) -> None:
    _current.reset(token)
