"""The tracker and registry calls of a command, made by its tracking worker
(``worker.TrackingWorker``): the same methods as ``Tracker`` and ``Registry``, each sent
over the pipe (posted, or waited for when its answer is needed)."""

from __future__ import annotations

import os
from typing import Any

from shipml.errors import ShipmlError, TrackingError
from shipml.tracking.registry import VersionInfo
from shipml.tracking.worker import TrackingWorker


class RemoteTracker:
    """The ``Tracker`` calls a pipeline run makes, made by a ``TrackingWorker``.

    The store is opened in the worker with the first call, so that a command that fails
    before it tracks anything stops the worker at once."""

    def __init__(
        self,
        worker: TrackingWorker,
        tracking_uri: str,
        registry_uri: str,
        experiment: str,
        artifact_root: str,
        timeout_s: float = 5.0,
        protected_aliases: tuple[str, ...] | list[str] = ("champion",),
    ) -> None:
        self.worker = worker
        self.timeout_s = timeout_s
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self.protected_aliases = tuple(protected_aliases)
        self._opened = False

    def _open(self) -> None:
        if not self._opened:
            self._opened = True
            self.worker.post(
                "open",
                "tracker",
                self.tracking_uri,
                self.registry_uri,
                self.experiment,
                self.artifact_root,
                timeout_s=self.timeout_s,
                protected_aliases=list(self.protected_aliases),
            )

    def _post(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._open()
        self.worker.post("tracker", method, *args, **kwargs)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._open()
        return self.worker.call("tracker", method, *args, **kwargs)

    def start_run(self, name: str, tags: dict[str, str]) -> str:
        return str(self._call("start_run", name, tags))

    def end_run(self, run_id: str, status: str) -> None:
        """End the run; waits, so that everything it logged is in the store. A run whose
        logging failed ends as FAILED, and the failure is raised. If the worker died
        (killed, crashed), nobody is left to end the run: it is ended FAILED from this
        process, not left RUNNING."""
        if self.worker.interrupted:
            return  # the worker ends the runs left open as FAILED itself
        if self.worker.died:  # its death was raised to the caller already
            self._end_here(run_id)
            if status != "FAILED":
                raise TrackingError(
                    f"the tracking worker died during run {run_id}, which was ended as "
                    f"FAILED instead of {status}: what it was sent last may not be recorded",
                    hint="run the command again",
                )
            return
        try:
            self.worker.sync()
            self._call("end_run", run_id, status)
        except ShipmlError:
            if self.worker.usable:
                self._call("end_run", run_id, "FAILED")
            elif self.worker.died:
                self._end_here(run_id)
            raise

    def _end_here(self, run_id: str) -> None:
        """End the run FAILED with a tracker in this process (the worker is dead)."""
        from shipml.tracking.store import Tracker

        tracker = Tracker(
            self.tracking_uri,
            self.registry_uri,
            self.experiment,
            self.artifact_root,
            timeout_s=self.timeout_s,
            protected_aliases=self.protected_aliases,
        )
        tracker.end_run(run_id, "FAILED")

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        self._call("log_params", run_id, params)  # waits: before any step runs

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        # Waits (once per executed step): a step whose metrics the store refuses fails
        # the run there, as in one process, before the next step runs.
        self._call("log_metrics", run_id, {k: float(v) for k, v in metrics.items()}, step)

    def log_batch(self, run_id: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        self._post("log_batch", run_id, metrics, {k: str(v) for k, v in tags.items()})

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._post("set_tags", run_id, {k: str(v) for k, v in tags.items()})

    def log_artifacts(
        self, run_id: str, local_dir: os.PathLike[str], path: str | None = None
    ) -> None:
        # Waits: the caller may delete the folder once this returns.
        self._call("log_artifacts", run_id, os.fspath(local_dir), path)

    def log_text(self, run_id: str, text: str, file: str) -> None:
        self._post("log_text", run_id, text, file)

    def artifact_uri(self, run_id: str) -> str:
        return str(self._call("artifact_uri", run_id))

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
        self._call(
            "log_dataset",
            run_id,
            name=name,
            digest=digest,
            source=source,
            schema=schema,
            rows=rows,
            context=context,
            version=version,
        )

    def registry(self) -> RemoteRegistry:
        return RemoteRegistry(self)


class RemoteRegistry:
    """The ``Registry`` calls a pipeline run makes, made by the tracker's worker."""

    def __init__(self, tracker: RemoteTracker) -> None:
        self.tracker = tracker

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.tracker._open()
        return self.tracker.worker.call("registry", method, *args, **kwargs)

    def find_by_digest(self, name: str, content_digest: str) -> VersionInfo | None:
        found = self._call("find_by_digest", name, content_digest)
        return None if found is None else VersionInfo(**found)

    def register(
        self,
        name: str,
        *,
        run_id: str,
        source: str,
        content_digest: str,
        tags: dict[str, str],
        description: str = "",
    ) -> tuple[VersionInfo, bool]:
        info, created = self._call(
            "register",
            name,
            run_id=run_id,
            source=source,
            content_digest=content_digest,
            tags=tags,
            description=description,
        )
        return VersionInfo(**info), bool(created)

    def aliases(self, name: str) -> dict[str, str]:
        return dict(self._call("aliases", name))

    def set_alias(self, name: str, version: str, alias: str) -> VersionInfo:
        return VersionInfo(**self._call("set_alias", name, version, alias))


def remote_tracker_for(worker: TrackingWorker, config: Any) -> RemoteTracker:
    """The project's tracker, served by ``worker`` (``config`` is a ``ProjectConfig``)."""
    return RemoteTracker(
        worker,
        config.tracking_uri,
        config.registry_uri,
        config.experiment_name,
        config.artifact_root,
        protected_aliases=tuple(config.gates.protect),
        timeout_s=getattr(config.tracking, "timeout_s", 5.0),
    )
