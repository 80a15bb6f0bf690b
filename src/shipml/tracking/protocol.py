"""What a pipeline run asks of a tracker: one ``Protocol`` that both trackers implement.

``store.Tracker`` makes the calls in this process; ``remote.RemoteTracker`` sends them to
the tracking worker (``shipml run``: MLflow imported in a child process, see
``worker.py``). The runner, the run record and the registration take a ``RunTracker``
and cannot tell the two apart. mypy checks that both classes have these methods with
these signatures (``_both_conform`` below); tests/tracking/test_protocol.py runs one
conformance suite against both (as scikit-learn's ``check_estimator`` does for
estimators), each against a real MLflow store, and checks they record the same things
and fail the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from shipml.tracking.remote import RemoteTracker
    from shipml.tracking.store import Tracker


@runtime_checkable
class RunTracker(Protocol):
    """The calls of one pipeline run: a run's start and end, what it logs, its artifacts'
    location. A call the store refuses, or a store out of reach, is a ``TrackingError``
    (message and hint): raised by the call itself, or, for a call the worker's tracker
    posts without waiting (tags, texts, batches), by its next call that waits and by
    ``end_run`` at the latest, which then ends the run as FAILED."""

    def start_run(self, name: str, tags: dict[str, str]) -> str:
        """Create a run (RUNNING) in the project's experiment; its id."""
        ...

    def end_run(self, run_id: str, status: str) -> None:
        """End the run as ``status`` (FINISHED, FAILED, KILLED) once all it logged is in."""
        ...

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Parameters; a value that is not a string is stored as its JSON."""
        ...

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None: ...

    def log_batch(self, run_id: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
        """Metrics and tags in one write."""
        ...

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None: ...

    def log_artifacts(self, run_id: str, local_dir: Path, path: str | None = None) -> None:
        """Copy a folder's files under ``path``; the folder may be deleted on return."""
        ...

    def log_text(self, run_id: str, text: str, file: str) -> None: ...

    def artifact_uri(self, run_id: str) -> str: ...

    def log_dataset(
        self,
        run_id: str,
        *,
        name: str,
        digest: str,
        source: str,
        schema: list[dict[str, Any]],
        rows: int,
        context: str = "training",
        version: int | None = None,
    ) -> None:
        """A dataset snapshot as an MLflow dataset input of the run."""
        ...


if TYPE_CHECKING:

    def _both_conform(a: Tracker, b: RemoteTracker) -> tuple[RunTracker, RunTracker]:
        return a, b  # mypy: both classes are RunTrackers
