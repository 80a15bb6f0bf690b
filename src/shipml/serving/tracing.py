"""OpenTelemetry tracing for the model server.

The exporter is chosen by the standard environment variables (``OTEL_TRACES_EXPORTER``
= ``console`` or ``otlp``; ``OTEL_SERVICE_NAME``; ``OTEL_EXPORTER_OTLP_*``); with none
set, tracing is off and costs nothing per request. A W3C ``traceparent`` header is
honoured. Spans: the request (HTTP semantic conventions), then ``validate`` and ``infer``.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from shipml.errors import ConfigError

_NULL = nullcontext()


class Tracing:
    def __init__(self, tracer: Any = None) -> None:
        self.tracer = tracer
        self.enabled = tracer is not None

    @classmethod
    def from_environment(cls) -> Tracing:
        exporter = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
        if exporter in ("", "none"):
            return cls(None)
        if exporter not in ("console", "otlp"):
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER={exporter[:40]!r} is not an exporter shipml knows",
                hint="use none, console or otlp",
            )
        if exporter == "otlp":
            try:
                import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
            except ImportError as exc:
                raise ConfigError(
                    "OTEL_TRACES_EXPORTER=otlp, but the OTLP exporter is not installed",
                    hint="pip install opentelemetry-exporter-otlp-proto-http, or set "
                    "OTEL_TRACES_EXPORTER=console or none",
                ) from exc
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        provider = TracerProvider(
            resource=Resource.create(
                {"service.name": os.environ.get("OTEL_SERVICE_NAME", "shipml-serve")}
            )
        )
        if exporter == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        return cls(trace.get_tracer("shipml.serving"))

    def request_span(
        self, method: str, route: str, path: str, headers: dict[str, str]
    ) -> AbstractContextManager[Any]:
        if not self.enabled:
            return _NULL
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        return self.tracer.start_as_current_span(
            f"{method} {route}",
            context=extract(headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route, "url.path": path},
        )

    def span(self, name: str) -> AbstractContextManager[Any]:
        if not self.enabled:
            return _NULL
        return self.tracer.start_as_current_span(name)
