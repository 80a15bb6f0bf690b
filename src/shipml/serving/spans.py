"""A trace's spans on the request path (``shipml.serving.tracing`` decides what is
traced and makes them): a span is a small object with its ids, times and attributes;
the request's open spans are one stack in a context variable (so concurrent requests on
one event loop never mix). A finished span becomes a tuple of plain values
(``span_records.Finished``) in its root's list, and when the root ends the request's spans
go to ``shipml.serving.otlp.Exporter`` at once (marshalled there, queued as bytes).
"""

from __future__ import annotations

import operator
import os
import random
import time
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Any

from shipml.serving.otlp import _PLAIN, Exporter, _value
from shipml.serving.span_records import SERVED, STATUS, Finished, Served, expand_served

_NULL = nullcontext()
SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP's SpanKind values
_current: ContextVar[list[Span] | None] = ContextVar("shipml_spans", default=None)
_ids = random.Random()  # seeded from the OS; ids need to be unique, not secret
_bits, _now = _ids.getrandbits, time.time_ns
# A finished span as plain values (span_records.Finished), read in C: what a root keeps of
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


class _Served(Span):
    """The model server's span of a request (``Tracing.request_span``): the method,
    route, path, request id and status code it is named and described by stay as they
    are, and go to the exporter as one record (``span_records.Served``), which the exporter
    process writes out: no name, no attribute dict made on the request path."""

    __slots__ = ("method", "path", "request_id", "route", "status")

    def __init__(
        self,
        exporter: Exporter,
        trace_id: int,
        parent_id: int,
        method: str,
        route: str,
        path: str,
        request_id: str,
    ) -> None:
        self.exporter, self.trace_id, self.parent_id = exporter, trace_id, parent_id
        self.method, self.route, self.path, self.request_id = method, route, path, request_id
        self.span_id = _bits(64) or 1
        self.start = self.end = _now()
        self.status: int | None = None
        self.attributes = None
        self.done = None
        self.error = ""

    @property  # read only: made from the method and route when asked
    def name(self) -> str:  # type: ignore[override]
        return f"{self.method} {self.route}"

    @property
    def kind(self) -> int:  # type: ignore[override]
        return SERVER

    def set_attribute(self, key: str, value: Any) -> None:
        if key == STATUS and type(value) is int:
            self.status = value
        else:
            super().set_attribute(key, value)

    def record(self, end: int, error: str) -> Served:
        return (
            SERVED,
            self.trace_id,
            self.span_id,
            self.parent_id,
            self.start,
            end,
            self.method,
            self.route,
            self.path,
            self.request_id,
            self.status,
            self.attributes,
            error,
        )

    def fields(self) -> Finished:
        return expand_served(self.record(self.end, self.error))

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.end = end = _now()
        self.error = error = "" if exc is None else f"{kind.__name__}: {exc}"[:200]
        _current.reset(self.token)
        done, self.done = self.done or [], None
        done.append(self.record(end, error))  # type: ignore[arg-type]  # the exporter takes both
        self.exporter.queue_plain(done)


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


def _unsampled() -> AbstractContextManager[Any]:
    """An unsampled request: nothing, or, inside a traced one, no current span."""
    return _NULL if _current.get() is None else _Detached()
