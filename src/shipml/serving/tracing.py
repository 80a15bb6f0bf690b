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
the untraced path (``recording``). The spans themselves are ``shipml.serving.spans``;
a scored request's ``validate``, ``batch`` and ``model`` are recorded in one call once
they have ended (``scored``), and the request's own span keeps its method, route, path,
request id and status as they are (``spans._Served``): both become one record each,
which the exporter process writes out. A traced request takes about 36k instructions
on the request path; 71k with three ``with`` blocks and a dict of attributes
(``benchmarks/serving/tracing_work.py``).
"""

from __future__ import annotations

import os
import random
import re
from contextlib import AbstractContextManager
from typing import Any

from shipml.serving.otlp import _PLAIN, Exporter
from shipml.serving.span_records import SCORED, Scored
from shipml.serving.spans import (
    _NULL,
    CLIENT,
    SERVER,
    Span,
    _bits,
    _Child,
    _current,
    _plain_attributes,
    _Served,
    _unsampled,
)

EXPORTERS = ("none", "otlp", "console")
TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

Headers = dict[str, str] | list[tuple[bytes, bytes]]  # a dict, or ASGI's pairs


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
        assert self.exporter is not None
        if str is type(method) is type(route) is type(path) is type(request_id):
            return _Served(self.exporter, ids[0], ids[1], method, route, path, request_id)
        attributes = {  # (an ASGI server gives str)
            "http.request.method": method,
            "http.route": route,
            "url.path": path,
            "shipml.request_id": request_id,
        }
        attributes = _plain_attributes(attributes)
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

    def scored(
        self,
        begun: int,
        parsed: int | None,
        ended: int,
        request_id: str,
        timing: tuple[int, int, int] | None,
        error: BaseException | None = None,
    ) -> None:
        """The ``validate`` (``begun`` → ``parsed``), ``batch`` (``parsed`` → ``ended``)
        and ``model`` (``timing``: the batcher's run) spans of one scored request, as
        finished children of the current span: the same spans three ``with`` blocks
        make, as one record (``span_records.Scored``: their ids are drawn where it is
        encoded), for a fraction of the work on the request path.
        ``parsed`` None: the request failed validation with ``error``; else ``error``
        failed its batch."""
        stack = _current.get()
        if not stack:
            return
        parent = stack[-1]
        text = "" if error is None else f"{type(error).__name__}: {error}"[:200]
        record: Scored = (
            SCORED,
            parent.trace_id,
            parent.span_id,
            begun,
            parsed,
            ended,
            timing,
            request_id,
            text,
        )
        done = stack[0].done
        if done is not None:
            done.append(record)  # type: ignore[arg-type]  # the exporter takes both
        elif self.exporter is not None:
            self.exporter.queue_plain([record])  # type: ignore[list-item]

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
