"""Finished spans, sent off the request path: OTLP over HTTP/protobuf, or JSON lines.

The request path queues a request's finished spans at once (``Exporter.queue_plain``:
no lock, no I/O); every ``GROUP`` requests, their spans are marshalled (``marshal``, in
C: one call for sixteen requests costs less than sixteen calls) into bytes, in a bounded
queue. Bytes, because the garbage collector never walks them: thousands of
queued span objects or tuples made its full collections, which walk every object of
the server, frequent and as costly as the recording. A thread wakes every
``interval_s`` — or once a full batch (``BATCH`` spans) is queued — and hands what is
queued, joined, to an exporter process of its own in one pipe write. That process
(``shipml.serving.otlp_sender``) encodes each batch as one ``ExportTraceServiceRequest``
(``shipml.serving.otlp_wire``) and POSTs it to the collector, retrying a refused or
throttled export a few times with backoff. A scored request's ``validate``, ``batch``
and ``model`` spans travel as one record (``span_records.Scored``), and the request's
own span as another (``Served``), which the exporter process writes out from fixed
layouts. Whatever the server's process does per span
holds its GIL and so slows the answers down; the exporter process runs beside it. The
pipe is the server's own (``marshal`` is read from nowhere else), and the exporter
process ends when the server does (end of its input).

When spans come faster than the collector takes them, the oldest queued ones are
dropped and counted (``dropped``): tracing never slows the answers down. The console
exporter (JSON lines on stdout, for debugging) writes from the thread.

Why not the OpenTelemetry SDK's span processor and exporter: on this server they cost
about 80 µs per request to create four spans and 100 µs more to encode them, where a
request takes 80 µs of CPU; here a traced request costs the server's process about 7 µs
(benchmarks/serving/tracing_cost.py) and the exporter process about 4 µs
(benchmarks/README.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import marshal
import numbers
import os
import select
import subprocess
import sys
import threading
import weakref
from collections import deque
from typing import Any

import orjson

from shipml.serving import otlp_sender
from shipml.serving.otlp_sender import FRAME
from shipml.serving.span_records import Finished, as_spans

log = logging.getLogger("shipml.serving")

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
_exporters: weakref.WeakSet[Exporter] = weakref.WeakSet()


def traces_endpoint(endpoint: str = "") -> str:
    """The traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else ``endpoint``, else
    OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else the collector's default."""
    env = os.environ
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    if endpoint:
        return endpoint
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return DEFAULT_ENDPOINT


class Exporter:
    """Batches finished spans of one service to one destination, from a thread."""

    BATCH = 2048  # spans per export (about 300 kB of OTLP): few POSTs, few wake-ups
    GROUP = 16  # requests whose spans are marshalled in one call
    QUEUE = 20_000  # spans waiting at most; beyond, the oldest are dropped

    def __init__(
        self,
        service: str,
        *,
        endpoint: str = "",
        console: bool = False,
        interval_s: float = 1.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.service = service
        self.console = console
        self.endpoint = "" if console else traces_endpoint(endpoint)
        self.interval_s, self.timeout_s = interval_s, timeout_s
        # (spans, marshalled list of them): a chunk of requests' spans each (``GROUP``
        # requests on the request path); the thread joins them
        self.queue: deque[tuple[int, bytes]] = deque()
        self._pending: deque[list[Finished]] = deque()  # requests' spans not yet marshalled
        self.queued = 0  # spans in the queue (the request path's count)
        self.taken = 0  # spans the thread took (its own count)
        self.dropped = self.lost = 0  # queue overflow; batches the exporter process lost
        self._wake = threading.Event()
        self._woken = False  # the thread was woken for a full batch and has not run yet
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one hand-over at a time (the thread, or flush)
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        _exporters.add(self)

    def _forked(self) -> None:
        """In a child after fork: no thread, no exporter process (the next span starts
        them)."""
        self._thread = self._child = None
        self._lock = threading.Lock()

    # -- the request path ----------------------------------------------------------------
    def add(self, span: Finished) -> None:
        self.extend([span])

    def extend(self, spans: list[Finished]) -> None:
        """Queue finished spans (``tracing.fields_of``: a request's, at once), their
        attribute values made plain first (numpy numbers as Python's, the rest as text)."""
        for i, span in enumerate(spans):
            attributes = span[7]
            if attributes and not _PLAIN.issuperset(map(type, attributes.values())):
                spans[i] = _plain(span)
        self.queue_plain(spans, now=True)

    def queue_plain(self, spans: list[Finished], *, now: bool = False) -> None:
        """Queue finished spans whose attribute values are exactly str, int, float or bool
        (``tracing`` makes them so as they are set), marshalled with those of the next
        requests (``GROUP`` at a time; at once with ``now``): bytes, which the garbage
        collector never walks, wait in the queue, where thousands of span tuples made its
        collections frequent and long."""
        pending = self._pending
        pending.append(spans)
        self.queued += len(spans)
        if now or len(pending) >= self.GROUP:
            self._seal()
        waiting = self.queued - self.taken
        if waiting > self.QUEUE:
            self._drop_oldest()
        if self._thread is None:  # the first spans in this process
            self._start()
        elif waiting >= self.BATCH and not self._woken:  # wake it once
            self._woken = True
            self._wake.set()

    def _seal(self) -> None:
        """The requests' spans waiting in ``_pending``, marshalled in one call onto the
        queue: a third of what marshal costs a request is per call. Both the request path
        and the thread seal (each request's spans are taken once: ``popleft``)."""
        pending, spans = self._pending, []
        while True:
            try:
                spans += pending.popleft()
            except IndexError:
                break
        if spans:
            self.queue.append((len(spans), marshal.dumps(spans)))

    def _drop_oldest(self) -> None:
        """Drop (and count) the oldest queued spans beyond ``QUEUE``."""
        queue = self.queue
        while self.queued - self.taken > self.QUEUE and queue:
            try:
                count, _ = queue.popleft()
            except IndexError:  # the thread took it
                break
            self.queued -= count
            self.dropped += count

    # -- the thread ----------------------------------------------------------------------
    def _start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="shipml-spans")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self._woken = False
            self._hand_over()

    def _take(self) -> tuple[int, list[bytes]]:
        """Up to about BATCH spans from the queue: their count and marshalled lists."""
        queue, chunks, count = self.queue, [], 0
        while count < self.BATCH:
            try:
                size, chunk = queue.popleft()
            except IndexError:
                break
            chunks.append(chunk)
            count += size
        self.taken += count
        return count, chunks

    def _hand_over(self) -> None:
        with self._lock:
            self._seal()
            while self.queue:
                count, chunks = self._take()
                try:
                    if self.console:
                        spans = as_spans([s for c in chunks for s in marshal.loads(c)])
                        lines = [orjson.dumps(_as_dict(s, self.service)) + b"\n" for s in spans]
                        sys.stdout.buffer.write(b"".join(lines))
                        sys.stdout.flush()
                    else:
                        self._write(chunks)
                except (OSError, ValueError) as exc:  # the exporter process is gone
                    self.lost += count
                    _release(self._child)
                    self._child = None
                    log.warning("could not hand %d spans over: %s", count, exc)

    def _write(self, chunks: list[bytes] | None) -> None:
        """One frame to the exporter process: a length, then a marshalled list of
        marshalled lists of spans (None: a flush)."""
        data = marshal.dumps(chunks)
        child = self._process()
        assert child.stdin is not None
        child.stdin.write(FRAME.pack(len(data)))  # apart: a copy of ~300 kB cost 0.2 ms
        child.stdin.write(data)
        child.stdin.flush()

    def _process(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            _release(self._child)
            self._child = subprocess.Popen(
                [sys.executable, "-P", otlp_sender.__file__, self.endpoint, self.service],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._child

    def flush(self) -> dict[str, int]:
        """Send everything queued now, and wait until the collector has it (or the
        exporter process gave up on it); returns the exporter process's counts."""
        self._hand_over()
        if self.console:
            return {}
        with self._lock:
            try:
                self._write(None)  # a flush: answered once everything before it is sent
                child = self._process()
                assert child.stdout is not None
                ready, _, _ = select.select([child.stdout], [], [], self.timeout_s * 6)
                line = child.stdout.readline() if ready else b""
            except (OSError, ValueError):
                line = b""
        return dict(json.loads(line)) if line else {}

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s * 2)
        self._hand_over()
        child, self._child = self._child, None
        if child is not None and child.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                child.stdin.close()  # the end of its input: it sends what it has and exits
            try:
                child.wait(timeout=self.timeout_s * 6)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        _release(child)


def _release(child: subprocess.Popen[bytes] | None) -> None:
    """Close our ends of an exporter process's pipes (it is gone, or has ended)."""
    if child is None:
        return
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError, ValueError):
                pipe.close()


_PLAIN = frozenset({str, int, float, bool})


def _plain(fields: Finished) -> Finished:
    """The span's fields with attribute values of exactly str, int, float or bool: marshal
    would write a numpy number as its bytes (numpy numbers have a buffer)."""
    attributes = fields[7]
    if not attributes or _PLAIN.issuperset(map(type, attributes.values())):
        return fields
    plain = {str(k): _value(v) for k, v in attributes.items()}
    return (*fields[:7], plain, fields[8])


def _as_dict(fields: Finished, service: str) -> dict[str, Any]:
    """A span as the console exporter prints it."""
    trace, span, parent, name, kind, start, end, attributes, error = fields
    return {
        "service": service,
        "name": name,
        "trace_id": f"{trace:032x}",
        "span_id": f"{span:016x}",
        "parent_id": f"{parent:016x}" if parent else None,
        "kind": kind,
        "start_unix_nano": start,
        "end_unix_nano": end,
        "attributes": attributes or {},
        "error": error or None,
    }


def _value(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if type(value).__name__ in ("bool_", "bool"):  # numpy's bool
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def _after_fork() -> None:
    for exporter in list(_exporters):
        exporter._forked()


os.register_at_fork(after_in_child=_after_fork)
