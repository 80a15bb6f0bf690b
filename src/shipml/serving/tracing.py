"""Traces of the model server and the gateway: OpenTelemetry's data model and protocols
(W3C ``traceparent``, OTLP over HTTP/protobuf), recorded with as little work per
request as a trace allows.

``[tracing]`` in shipml.toml chooses the exporter (``otlp``: to a collector, Jaeger or
Tempo; ``console``: JSON lines on stdout; ``none``), the endpoint and the sampling
ratio; the standard ``OTEL_*`` environment variables, when set, win. With ``none``
every call here is a constant and costs nothing per request.

Spans, all carrying the request id (``shipml.request_id``): the gateway's ``gateway``
(CLIENT; it sends ``traceparent`` on) → the server's request span (SERVER, HTTP
semantic conventions) → ``validate`` and ``batch`` (the wait in the micro-batch and the
run) → ``model`` (the onnxruntime call, with the batch's row count). A request is
sampled once, where its trace starts (``ratio``), and an unsampled one creates no span
at all; a valid ``traceparent`` from upstream is obeyed (parent-based sampling), a
malformed one is ignored (a new trace starts, as the W3C spec says).

Sampling is decided first: an unsampled request gets a constant and its caller takes
the untraced path (``recording``). A span is a small object with its ids, times and
attributes; the request's open spans are one stack in a context variable (so concurrent
requests on one event loop never mix). A finished span becomes a tuple of plain values
in its root's list, and when the root ends the request's spans go to
``shipml.serving.otlp.Exporter`` at once (marshalled there, queued as bytes).
"""

from __future__ import annotations

import operator
import os
import random
import re
import time
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Any

from shipml.serving.otlp import _PLAIN, Exporter, _value
from shipml.serving.otlp_wire import Finished

_NULL = nullcontext()
EXPORTERS = ("none", "otlp", "console")
SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP's SpanKind values
TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

_current: ContextVar[list[Span] | None] = ContextVar("shipml_spans", default=None)
_ids = random.Random()  # seeded from the OS; ids need to be unique, not secret
_bits, _now = _ids.getrandbits, time.time_ns
# A finished span as plain values (otlp_wire.Finished), read in C: what a root keeps of
# its finished children, and what the exporter marshals.
fields_of = operator.attrgetter(
    "trace_id", "span_id", "parent_id", "name", "kind", "start", "end", "attributes", "error"
)
os.register_at_fork(after_in_child=_ids.seed)  # forked workers: ids of their own


class Span:
    """One span: a root (a request's, the gateway's) makes a stack of the request's open
    spans current (one context-variable write per request); a child (``_Child``) is
    pushed on that stack and popped when it ends. Finished children wait in their root's
    ``done`` list (as ``fields_of`` tuples), and the root hands them all to the exporter
    at once when it ends (a child ends before its root: they are nested ``with``
    blocks)."""

    __slots__ = (
        "attributes",
        "done",
        "end",
        "error",
        "exporter",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "stack",
        "start",
        "token",
        "trace_id",
    )

    def __init__(
        self,
        exporter: Exporter,
        name: str,
        trace_id: int,
        parent_id: int,
        kind: int,
        attributes: dict[str, Any] | None,
    ) -> None:
        self.exporter = exporter
        self.name, self.kind, self.attributes = name, kind, attributes
        self.trace_id, self.parent_id = trace_id, parent_id
        self.span_id = _bits(64) or 1
        self.start = self.end = _now()
        self.error = ""
        self.stack: list[Span] | None = None  # a root's is its context's
        self.token: Any = None
        self.done: list[Finished] | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        if type(value) not in _PLAIN:  # as the exporter sends it (numpy numbers...)
            value = _value(value)
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    def get_span_context(self) -> Span:
        """OpenTelemetry's way to the span's ids (``.trace_id``, ``.span_id``), as the
        audit record reads its trace id."""
        return self

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-01"

    def __enter__(self) -> Span:
        self.done = []
        self.token = _current.set([self])
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.end = _now()
        if exc is not None:
            self.error = f"{kind.__name__}: {exc}"[:200]
        _current.reset(self.token)
        done, self.done = self.done or [], None
        done.append(fields_of(self))
        self.exporter.queue_plain(done)

    def fields(self) -> Finished:
        """What the exporter queues: the span as plain values."""
        fields: Finished = fields_of(self)
        return fields


class _Child(Span):
    """A span in a request's root (``Tracing.span``): ends straight into its ``done``."""

    __slots__ = ()

    def __init__(
        self, exporter: Exporter, name: str, attributes: dict[str, Any] | None, stack: list[Span]
    ) -> None:
        parent = stack[-1]
        self.exporter, self.name, self.attributes, self.stack = exporter, name, attributes, stack
        self.trace_id, self.parent_id = parent.trace_id, parent.span_id
        self.span_id = _bits(64) or 1
        self.start = _now()

    def __enter__(self) -> Span:
        self.stack.append(self)  # type: ignore[union-attr]  # a child always has one
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        end = _now()
        error = "" if exc is None else f"{kind.__name__}: {exc}"[:200]
        stack = self.stack
        stack.pop()  # type: ignore[union-attr]
        span = (
            self.trace_id,
            self.span_id,
            self.parent_id,
            self.name,
            INTERNAL,
            self.start,
            end,
            self.attributes,
            error,
        )
        done = stack[0].done if stack else None
        if done is not None:
            done.append(span)
        else:  # its root is not open: sent on its own
            self.exporter.queue_plain([span])


def _plain_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Attribute values as the exporter sends them: exactly str, int, float or bool
    (``otlp._value``: numpy numbers as Python's, anything else as its text)."""
    if _PLAIN.issuperset(map(type, attributes.values())):
        return attributes
    return {str(k): _value(v) for k, v in attributes.items()}


class _Detached:
    """An unsampled request inside a traced one (an in-process variant of the gateway):
    no span of its own, and no current span for its children."""

    __slots__ = ("token",)

    def __enter__(self) -> None:
        self.token = _current.set(None)

    def __exit__(self, *exc: Any) -> None:
        _current.reset(self.token)


Headers = dict[str, str] | list[tuple[bytes, bytes]]  # a dict, or ASGI's pairs


def _unsampled() -> AbstractContextManager[Any]:
    """An unsampled request: nothing, or, inside a traced one, no current span."""
    return _NULL if _current.get() is None else _Detached()


def traceparent_of(headers: Headers) -> str | None:
    """The ``traceparent`` header's value, from a dict or from ASGI's header pairs (read
    as they are: no dict built for one header)."""
    if isinstance(headers, dict):
        return headers.get("traceparent")
    for key, value in headers:
        if key == b"traceparent":
            return value.decode("latin-1")
    return None


def parse_traceparent(value: str | None) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, sampled) of a valid W3C ``traceparent``, else None."""
    if not value or len(value) > 128:
        return None
    match = TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    trace, span = int(match.group(2), 16), int(match.group(3), 16)
    if not trace or not span:
        return None
    return trace, span, bool(int(match.group(4), 16) & 1)


class Tracing:
    def __init__(self, exporter: Exporter | None = None, *, ratio: float = 1.0) -> None:
        self.exporter = exporter
        self.enabled = exporter is not None
        self.ratio = ratio
        self._random = random.random

    @classmethod
    def from_environment(cls) -> Tracing:
        return cls.configure()

    @classmethod
    def configure(
        cls,
        exporter: str = "none",
        *,
        endpoint: str = "",
        ratio: float = 1.0,
        service: str = "shipml-serve",
    ) -> Tracing:
        """Tracing of one service (no global state: a process may hold a server and a
        gateway), exporting in batches off the request path."""
        from shipml.errors import ConfigError

        exporter = os.environ.get("OTEL_TRACES_EXPORTER", exporter).strip().lower()
        if exporter in ("", "none"):
            return cls(None)
        if exporter not in EXPORTERS:
            raise ConfigError(
                f"unknown trace exporter {exporter[:40]!r}", hint="use otlp, console or none"
            )
        text = os.environ.get("OTEL_TRACES_SAMPLER_ARG")
        try:
            ratio = float(text) if text is not None else float(ratio)
        except ValueError:
            raise ConfigError(
                f"OTEL_TRACES_SAMPLER_ARG={str(text)[:40]!r} is not a number",
                hint="a sampling ratio between 0 and 1, e.g. 0.1",
            ) from None
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(
                f"the trace sampling ratio must be between 0 and 1, got {ratio!r}",
                hint="[tracing] sampling_ratio or OTEL_TRACES_SAMPLER_ARG, e.g. 0.1",
            )
        name = os.environ.get("OTEL_SERVICE_NAME") or service
        return cls(Exporter(name, endpoint=endpoint, console=exporter == "console"), ratio=ratio)

    def sampled(self, headers: Headers) -> bool:
        """Whether this request is traced: its upstream's decision, else the ratio."""
        if not self.enabled:
            return False
        parent = parse_traceparent(traceparent_of(headers))
        if parent is not None:
            return parent[2]
        return self.ratio >= 1.0 or self._random() < self.ratio

    def _sampled_ids(self, headers: Headers) -> tuple[int, int] | None:
        """(trace id, parent span id) of a request this service traces, decided once
        where its trace starts; None: not sampled."""
        value = traceparent_of(headers)
        if value is not None and (parent := parse_traceparent(value)) is not None:
            return (parent[0], parent[1]) if parent[2] else None
        if self.ratio >= 1.0 or self._random() < self.ratio:
            return _bits(128) or 1, 0
        return None

    def request_span(
        self,
        method: str,
        route: str,
        path: str,
        headers: Headers,
        request_id: str = "",
    ) -> AbstractContextManager[Any]:
        """The server's span of one request (None inside when it is not sampled): an
        unsampled request gets a constant (no span, no context written)."""
        if not self.enabled:
            return _NULL
        ids = self._sampled_ids(headers)
        if ids is None:
            return _unsampled()
        attributes = {
            "http.request.method": method,
            "http.route": route,
            "url.path": path,
            "shipml.request_id": request_id,
        }
        if not (str is type(method) is type(route) is type(path) is type(request_id)):
            attributes = _plain_attributes(attributes)  # (an ASGI server gives str)
        assert self.exporter is not None
        return Span(self.exporter, f"{method} {route}", ids[0], ids[1], SERVER, attributes)

    def recording(self) -> bool:
        """Whether the current request is traced (a span of it is current): when not,
        the caller can take its untraced path."""
        return bool(_current.get())

    def span(self, name: str, **attributes: Any) -> AbstractContextManager[Any]:
        """A child of the current span; nothing when this request is not traced."""
        if not self.enabled:
            return _NULL
        stack = _current.get()
        if not stack:
            return _NULL
        assert self.exporter is not None
        if not attributes:
            return _Child(self.exporter, name, None, stack)
        if not _PLAIN.issuperset(map(type, attributes.values())):
            attributes = _plain_attributes(attributes)
        return _Child(self.exporter, name, attributes, stack)

    def record(self, name: str, start_ns: int, end_ns: int, **attributes: Any) -> None:
        """A finished child span of the current one (e.g. the model run, timed by the
        batcher on behalf of every request in the batch)."""
        if not self.enabled:
            return
        stack = _current.get()
        if not stack:
            return
        parent = stack[-1]
        span: Finished = (
            parent.trace_id,
            _bits(64) or 1,
            parent.span_id,
            name,
            INTERNAL,
            start_ns,
            end_ns,
            (
                None
                if not attributes
                else attributes
                if _PLAIN.issuperset(map(type, attributes.values()))
                else _plain_attributes(attributes)
            ),
            "",
        )
        done = stack[0].done
        if done is not None:
            done.append(span)
        elif self.exporter is not None:
            self.exporter.queue_plain([span])

    def client_span(
        self, name: str, headers: Headers, request_id: str
    ) -> AbstractContextManager[Any]:
        """The gateway's span for one forwarded request (CLIENT)."""
        if not self.enabled:
            return _NULL
        ids = self._sampled_ids(headers)
        if ids is None:
            return _unsampled()
        assert self.exporter is not None
        attributes = _plain_attributes({"shipml.request_id": request_id})
        return Span(self.exporter, name, ids[0], ids[1], CLIENT, attributes)

    def inject(self) -> bytes | None:
        """The ``traceparent`` of the current span, to send downstream (None: untraced)."""
        if not self.enabled:
            return None
        stack = _current.get()
        return stack[-1].traceparent.encode("latin-1") if stack else None

    def flush(self) -> None:
        if self.exporter is not None:
            self.exporter.flush()

    def shutdown(self) -> None:
        if self.exporter is not None:
            self.exporter.shutdown()
