"""A tracker in a child process, so that MLflow's import overlaps the command's own start.

Importing MLflow and opening its store takes about 1.5 s, most of a fully cached
``shipml run``. The command therefore starts this worker first: the worker imports
MLflow while the command loads the project, its pipeline and the step cache, then
makes the run's tracker and registry calls, in order, as they arrive over a pipe. The
work is the same as in one process; it runs on two cores at once.

One JSON object per line each way. A request names an allowed method of ``Tracker`` or
``Registry``; the answer carries its result, or its error (a ``TrackingError`` or
``RegistryError`` keeps its class, message and hint; anything else becomes a
``TrackingError`` naming the call). Calls wait for their answer, as in one process,
except the run's closing writes (texts, tags, the metrics of cached steps), which are
posted; ``end_run`` waits for them and ends the run as FAILED if one failed. A call
that waits first raises the error of any posted call, before it is sent.

Interrupts and deaths: the worker runs in its own process group, so Ctrl-C reaches
only the command; a command interrupted while it talks to the worker stops talking to
it. When its input ends (the command closed it, was interrupted or died) the worker
carries out what it was sent, ends every run it started and nobody ended as
``FAILED``, and exits: nothing is left running, no run is left ``RUNNING``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from types import TracebackType
from typing import IO, Any

from shipml.errors import RegistryError, ShipmlError, TrackingError
from shipml.tracking.registry import VersionInfo

TRACKER_CALLS = frozenset({"start_run", "end_run", "log_params", "log_metrics", "log_batch"})
TRACKER_CALLS |= {"set_tags", "log_artifacts", "log_text", "artifact_uri", "log_dataset"}
REGISTRY_CALLS = frozenset({"find_by_digest", "register", "aliases", "set_alias"})
_ERRORS: dict[str, type[ShipmlError]] = {e.__name__: e for e in (TrackingError, RegistryError)}


class WorkerFailed(Exception):
    """The worker's own traceback, chained under the error it answered (``--debug``)."""


class TrackingWorker:
    """The child process and its pipe. ``call`` waits for the answer, ``post`` does not.

    A thread reads the answers as they come, so the worker never blocks on a full pipe
    while the command is still sending. Use it as a context manager: leaving the block
    waits for the posted calls and ends the worker (their errors are raised only if the
    block itself did not raise; otherwise they are added to its exception as a note)."""

    def __init__(
        self, process: subprocess.Popen[str], notify: Callable[[str], None] | None = None
    ) -> None:
        self.process = process
        self.notify = notify  # says why the command waits, when it waits after Ctrl-C
        self.sent = 0  # requests sent so far
        self.interrupted = False  # an interrupt came while talking to the worker
        self.died = False  # its pipe ended before it was closed (killed, crashed)
        self._owed: deque[str] = deque()  # the calls whose answers are not taken yet
        self._error: ShipmlError | None = None  # the first error of a posted call
        self._closed = False
        self._answers: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._reader = threading.Thread(
            target=self._read, name="shipml-tracking-answers", daemon=True
        )
        self._reader.start()

    @classmethod
    def start(cls, notify: Callable[[str], None] | None = None) -> TrackingWorker:
        """Start the worker; it begins importing MLflow at once."""
        try:
            process = subprocess.Popen(
                # -P: the current folder (a project with a secrets.py or a yaml.py) must
                # not shadow the modules MLflow imports.
                [sys.executable, "-P", "-m", "shipml.tracking.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                process_group=0,
            )
        except OSError as exc:
            raise TrackingError(
                f"cannot start the tracking worker with {sys.executable}: {exc}"
            ) from exc
        return cls(process, notify)

    def __enter__(self) -> TrackingWorker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(raise_errors=exc is None)
        if exc is not None and self._error is not None:
            exc.add_note(f"tracking error too: {self._take_error().message}")

    # -- calls ----------------------------------------------------------------------------
    def post(self, target: str, method: str, *args: Any, **kwargs: Any) -> None:
        """Send a call that returns nothing; do not wait for it."""
        self._send(target, method, list(args), kwargs)

    def sync(self) -> None:
        """Wait for every call sent so far; raise the first error of a posted one."""
        self._guarded(self._drain)
        if self._error is not None:
            raise self._take_error()

    def call(self, target: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Send a call and return its result. The posted calls are waited for first, and
        if one of them failed its error is raised and this call is not sent."""
        self.sync()
        self._send(target, method, list(args), kwargs)
        return self._guarded(self._answer)

    @property
    def usable(self) -> bool:
        """False once the worker is closed, dead or was interrupted mid-conversation."""
        return not (self._closed or self.interrupted)

    def close(self, *, raise_errors: bool = True, timeout: float = 300.0) -> None:
        """Wait for the posted calls and end the worker.

        A worker that was sent nothing has changed nothing and is stopped at once;
        otherwise it finishes what it was sent, ends the runs left open as failed, and
        exits when its input closes."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.sent == 0:
                self.process.kill()
            elif not self.interrupted:
                self._guarded(self._drain)
        finally:
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):  # a worker that died closed its end
                    self.process.stdin.close()
            self._wait(timeout)
            self._reader.join(timeout=10)
        if self._error is not None and raise_errors:
            raise self._take_error()

    def _wait(self, timeout: float) -> None:
        """Wait for the worker to exit; after an interrupt, say what it is finishing."""
        try:
            self.process.wait(timeout=1.0)
            return
        except subprocess.TimeoutExpired:
            pass
        if self.interrupted and self.notify is not None:
            self.notify(
                "waiting for the tracking worker to record what it was sent and end the run "
                "as FAILED; Ctrl-C again leaves it to finish on its own"
            )
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    # -- the pipe -------------------------------------------------------------------------
    def _guarded(self, action: Callable[[], Any]) -> Any:
        """Run ``action``; an interrupt in the middle of it (a request half written, an
        answer taken but not counted) leaves the pipe unusable, so stop using it."""
        try:
            return action()
        except Exception:
            raise
        except BaseException:
            self.interrupted = True
            raise

    def _read(self) -> None:
        """The reader thread: every answer line into the queue; None when the pipe ends."""
        assert self.process.stdout is not None
        try:
            with contextlib.suppress(OSError, ValueError):
                for line in self.process.stdout:
                    self._answers.put(line)
        finally:
            self._answers.put(None)

    def _send(self, target: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        if not self.usable:
            raise TrackingError(f"the tracking worker is no longer in use; cannot call {method}")
        request = {"target": target, "method": method, "args": args, "kwargs": kwargs}
        line = json.dumps(request) + "\n"
        assert self.process.stdin is not None
        stdin = self.process.stdin

        def write() -> None:
            self._owed.append(f"{target}.{method}")
            self.sent += 1
            stdin.write(line)
            stdin.flush()

        try:
            self._guarded(write)
        except OSError:
            raise self._died(f"{target}.{method}") from None

    def _drain(self) -> None:
        while self._owed:
            self._keep_error()

    def _answer(self) -> Any:
        """The next answer's result, or its error raised (the oldest call owed)."""
        line = self._answers.get()
        if line is None:
            self._answers.put(None)  # the pipe stays ended for whoever reads next
            raise self._died(self._owed[0] if self._owed else "its start")
        self._owed.popleft()
        answer = json.loads(line)
        if "error" not in answer:
            return answer.get("result")
        error = answer["error"]
        cls = _ERRORS.get(error.get("kind", ""), TrackingError)
        raised = cls(str(error.get("message")), hint=error.get("hint"))
        raise raised from WorkerFailed(error.get("traceback", ""))

    def _keep_error(self) -> None:
        """Take the next answer; keep its error if it is the first."""
        try:
            self._answer()
        except ShipmlError as exc:
            if self._error is None:
                self._error = exc

    def _take_error(self) -> ShipmlError:
        error, self._error = self._error, None
        assert error is not None
        return error

    def _died(self, during: str) -> TrackingError:
        """The error for a worker whose pipe ended; no call can be answered any more."""
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._owed.clear()
        self._closed = True
        self.died = True
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        return TrackingError(
            f"the tracking worker (pid {self.process.pid}) ended with exit code {code} "
            f"during {during}; its messages, if any, are above",
            hint="run the command again; if it happens again, report it with those messages",
        )


# -- the worker's side ---------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A result as JSON: version infos as their fields, tuples as lists."""
    if isinstance(value, VersionInfo):
        return asdict(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class _Store:
    """The worker's tracker and registry (the first request opens them); its open runs."""

    def __init__(self) -> None:
        self.tracker: Any = None
        self.registry: Any = None
        self.open_runs: list[str] = []

    def answer(self, line: str) -> dict[str, Any]:
        """The answer to one request line: its result, or the error it raised."""
        method = "a request"
        try:
            try:
                request = json.loads(line)
            except ValueError:
                raise TrackingError(
                    f"the tracking worker got a line it cannot read: {line[:80]!r}"
                ) from None
            target, method = request.get("target"), request.get("method")
            args, kwargs = request.get("args", []), request.get("kwargs", {})
            return {"result": _plain(self.call(target, method, args, kwargs))}
        except Exception as exc:
            return {"error": _error(exc, method)}

    def call(self, target: Any, method: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        from shipml.tracking.registry import Registry
        from shipml.tracking.store import Tracker

        if target == "open":
            try:
                self.tracker = Tracker(*args, **kwargs)
                self.registry = Registry(self.tracker)
            finally:
                # MLflow and its store are loaded: keep those objects out of the
                # cyclic collector's passes from now on, and let it run (see main).
                gc.freeze()
                gc.enable()
            return None
        if self.tracker is None or self.registry is None:
            raise TrackingError(f"{target}.{method} was called before the store was opened")
        if target == "tracker" and method in TRACKER_CALLS:
            result = getattr(self.tracker, method)(*args, **kwargs)
            if method == "start_run":
                self.open_runs.append(result)
            elif method == "end_run" and args and args[0] in self.open_runs:
                self.open_runs.remove(args[0])
            return result
        if target == "registry" and method in REGISTRY_CALLS:
            return getattr(self.registry, method)(*args, **kwargs)
        raise TrackingError(f"the tracking worker does not serve {target}.{method}")

    def end_open_runs(self) -> None:
        if self.tracker is not None:
            for run_id in self.open_runs:
                with contextlib.suppress(Exception):  # nobody is left to tell
                    self.tracker.end_run(run_id, "FAILED")


def _error(exc: Exception, method: Any) -> dict[str, Any]:
    """An error as the command re-raises it: shipml's own errors by kind, others as a
    TrackingError naming the call; the traceback for the record."""
    if isinstance(exc, ShipmlError) and type(exc).__name__ in _ERRORS:
        kind, message, hint = type(exc).__name__, exc.message, exc.hint
    else:
        kind, hint = "TrackingError", None
        message = f"the MLflow store failed in {method}: {type(exc).__name__}: {exc}"
    detail = "".join(traceback.format_exception(exc))
    return {"kind": kind, "message": message, "hint": hint, "traceback": detail}


def serve(requests: IO[str], answers: IO[str]) -> None:
    """Answer requests until the input ends (the worker's main loop); then end the runs
    that were started and not ended (their command was interrupted or died) as FAILED.

    If the command is gone (its end of the answer pipe closed), what it sent is still
    carried out, unanswered: it was sent to be recorded."""
    store = _Store()
    answering = True
    try:
        for line in requests:
            answer = store.answer(line)
            if answering:
                try:
                    answers.write(json.dumps(answer, default=str) + "\n")
                    answers.flush()
                except OSError:  # the command is gone
                    answering = False
    finally:
        store.end_open_runs()


def main() -> None:
    """The worker process: import MLflow now, then serve requests from stdin."""
    # Importing MLflow allocates millions of objects, each allocation burst setting off
    # a full pass of the cyclic collector over all of them: about a fifth of the
    # worker's start. Nothing cyclic needs freeing before the store is open.
    gc.disable()
    # The worker lives as long as its input: a hang-up (its process group orphaned when
    # the command dies) must not cut short the recording of what the command sent.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Answers go to the real stdout; anything printed by libraries goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from shipml.tracking.store import no_telemetry, quiet_mlflow

    no_telemetry()
    import mlflow  # noqa: F401  (the reason for the worker: import it before it is needed)

    quiet_mlflow()
    serve(sys.stdin, answers)
    # Every call was answered after MLflow finished it (its writes are committed), so
    # nothing is left to flush: skip the interpreter's teardown of MLflow (about 0.5 s).
    with contextlib.suppress(OSError):  # the command may be gone
        answers.close()
        sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
