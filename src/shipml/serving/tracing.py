"""OpenTelemetry tracing for the model server and the gateway.

``[tracing]`` in shipml.toml chooses the exporter (``otlp``: OTLP over HTTP/protobuf to
a collector, Jaeger or Tempo; ``console``; ``none``), the endpoint and the sampling
ratio; the standard ``OTEL_*`` environment variables, when set, win. With ``none`` every
call here is a constant and costs nothing per request.

Spans, all carrying the request id (``shipml.request_id``): the gateway's ``gateway``
(CLIENT; it sends ``traceparent`` on) → the server's request span (SERVER, HTTP
semantic conventions) → ``validate`` and ``batch`` (the wait in the micro-batch and the
run) → ``model`` (the onnxruntime call, with the batch's row count). A request is
sampled once, where its trace starts (``ratio``), and an unsampled one creates no span
at all; a ``traceparent`` from upstream is obeyed (parent-based sampling).
"""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager, nullcontext
from typing import Any

_NULL = nullcontext()
EXPORTERS = ("none", "otlp", "console")


class Tracing:
    def __init__(self, tracer: Any = None, *, ratio: float = 1.0, provider: Any = None) -> None:
        self.tracer = tracer
        self.enabled = tracer is not None
        self.ratio = ratio
        self.provider = provider
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
        """A tracer with its own provider (no global state: a process may hold a server
        and a gateway), exporting in batches off the request path."""
        exporter = os.environ.get("OTEL_TRACES_EXPORTER", exporter).strip().lower()
        if exporter in ("", "none"):
            return cls(None)
        if exporter not in EXPORTERS:
            from shipml.errors import ConfigError

            raise ConfigError(
                f"unknown trace exporter {exporter[:40]!r}", hint="use otlp, console or none"
            )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        try:
            ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", ratio))
        except ValueError:
            from shipml.errors import ConfigError

            raise ConfigError(
                "OTEL_TRACES_SAMPLER_ARG="
                f"{os.environ.get('OTEL_TRACES_SAMPLER_ARG', '')[:40]!r} is not a number",
                hint="a sampling ratio between 0 and 1, e.g. 0.1",
            ) from None
        provider = TracerProvider(
            resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
        )
        if exporter == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            target = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or endpoint or None
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=target)))
        return cls(provider.get_tracer("shipml"), ratio=ratio, provider=provider)

    def sampled(self, headers: dict[str, str]) -> bool:
        """Whether this request is traced: its upstream's decision, else the ratio."""
        if not self.enabled:
            return False
        parent = headers.get("traceparent")
        if parent:
            try:
                return bool(int(parent.strip()[-2:], 16) & 1)  # the W3C "sampled" flag
            except ValueError:
                return False
        return self.ratio >= 1.0 or self._random() < self.ratio

    def request_span(
        self,
        method: str,
        route: str,
        path: str,
        headers: dict[str, str],
        request_id: str = "",
    ) -> AbstractContextManager[Any]:
        if not self.sampled(headers):
            return _NULL
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        return self.tracer.start_as_current_span(
            f"{method} {route}",
            context=extract(headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "url.path": path,
                "shipml.request_id": request_id,
            },
        )

    def span(self, name: str, **attributes: Any) -> AbstractContextManager[Any]:
        """A child of the current span; nothing when this request is not traced."""
        if not self.enabled:
            return _NULL
        from opentelemetry import trace

        if not trace.get_current_span().get_span_context().is_valid:
            return _NULL
        return self.tracer.start_as_current_span(name, attributes=attributes)

    def record(self, name: str, start_ns: int, end_ns: int, **attributes: Any) -> None:
        """A finished child span of the current one (e.g. the model run, timed by the
        batcher on behalf of every request in the batch)."""
        if not self.enabled:
            return
        from opentelemetry import trace

        if not trace.get_current_span().get_span_context().is_valid:
            return
        span = self.tracer.start_span(name, start_time=start_ns, attributes=attributes)
        span.end(end_time=end_ns)

    def client_span(
        self, name: str, headers: dict[str, str], request_id: str
    ) -> AbstractContextManager[Any]:
        """The gateway's span for one forwarded request (CLIENT)."""
        if not self.sampled(headers):
            return _NULL
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        return self.tracer.start_as_current_span(
            name,
            context=extract(headers),
            kind=SpanKind.CLIENT,
            attributes={"shipml.request_id": request_id},
        )

    def inject(self) -> bytes | None:
        """The ``traceparent`` of the current span, to send downstream (None: untraced)."""
        if not self.enabled:
            return None
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier)
        value = carrier.get("traceparent")
        return value.encode("latin-1") if value else None

    def flush(self) -> None:
        if self.provider is not None:
            self.provider.force_flush()

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
