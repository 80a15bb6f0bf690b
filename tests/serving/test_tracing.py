"""Traces people can use: a request through the gateway and a model server reaches an
OTLP receiver (HTTP/protobuf, decoded here with opentelemetry-proto) as one trace —
gateway → server → batch → model — every span carrying the request id; sampling keeps
the ratio asked for and creates no span for the others."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shipml.rollout.gateway import Gateway
from shipml.rollout.policy import TrafficPolicy, Variant
from shipml.serving.server import ServeSpec, build_app
from shipml.serving.tracing import Tracing


class Receiver:
    """An OTLP/HTTP traces endpoint: every request body decoded, its spans kept."""

    def __init__(self) -> None:
        spans: list[dict[str, Any]] = []
        self.spans = spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope in resource.scope_spans:
                        for s in scope.spans:
                            attrs = {a.key: a.value for a in s.attributes}
                            spans.append(
                                {
                                    "service": service,
                                    "name": s.name,
                                    "trace": s.trace_id.hex(),
                                    "id": s.span_id.hex(),
                                    "parent": s.parent_span_id.hex(),
                                    "request_id": attrs["shipml.request_id"].string_value
                                    if "shipml.request_id" in attrs
                                    else None,
                                }
                            )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


async def _post(app: Any, path: str, body: bytes, headers: list) -> tuple[int, bytes]:
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _row(cancer_data) -> bytes:
    X, _ = cancer_data
    return orjson.dumps({"instances": [X.iloc[0].to_dict()]})


def test_one_trace_from_the_gateway_to_the_model(cancer_package, cancer_data, receiver):
    otlp = {"exporter": "otlp", "endpoint": receiver.url, "sampling_ratio": 1.0}
    server = build_app(ServeSpec(str(cancer_package.path), "cancer", tracing=otlp))
    server.warm_up()
    tracing = Tracing.configure("otlp", endpoint=receiver.url, service="shipml-gateway")
    gateway = Gateway(TrafficPolicy("single", Variant("champion", app=server)), tracing=tracing)

    async def go() -> None:
        await gateway.start()
        try:
            status, _ = await _post(
                gateway, "/predict", _row(cancer_data), [(b"x-request-id", b"r-42")]
            )
            assert status == 200
        finally:
            await gateway.stop()

    asyncio.run(go())
    tracing.flush()
    server.tracing.flush()
    spans = {s["name"]: s for s in receiver.spans}
    assert set(spans) == {"gateway champion", "POST /predict", "validate", "batch", "model"}
    assert len({s["trace"] for s in receiver.spans}) == 1  # one trace
    assert spans["POST /predict"]["parent"] == spans["gateway champion"]["id"]
    assert spans["batch"]["parent"] == spans["POST /predict"]["id"]
    assert spans["model"]["parent"] == spans["batch"]["id"]
    assert spans["gateway champion"]["service"] == "shipml-gateway"
    assert spans["model"]["service"] == "shipml-serve"
    for name in ("gateway champion", "POST /predict", "batch"):
        assert spans[name]["request_id"] == "r-42"


def test_sampling_keeps_the_ratio_and_skips_the_rest(cancer_package, cancer_data, receiver):
    otlp = {"exporter": "otlp", "endpoint": receiver.url, "sampling_ratio": 0.1}
    server = build_app(ServeSpec(str(cancer_package.path), "cancer", tracing=otlp))
    server.warm_up()
    server.tracing._random = iter([0.05, 0.5] * 100).__next__  # 1 in 2 below 0.1

    async def go() -> None:
        for i in range(40):
            status, _ = await _post(
                server, "/predict", _row(cancer_data), [(b"x-request-id", f"s{i}".encode())]
            )
            assert status == 200
        # an upstream that sampled the request is obeyed, whatever the ratio
        parent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await _post(
            server,
            "/predict",
            _row(cancer_data),
            [(b"traceparent", parent), (b"x-request-id", b"up")],
        )

    asyncio.run(go())
    server.tracing.flush()
    requests = [s for s in receiver.spans if s["name"] == "POST /predict"]
    assert len(requests) == 21
    assert {s["request_id"] for s in requests} == {f"s{i}" for i in range(0, 40, 2)} | {"up"}
    upstream = next(s for s in requests if s["request_id"] == "up")
    assert upstream["trace"] == "0af7651916cd43dd8448eb211c80319c"


def test_tracing_off_costs_nothing_and_unknown_exporters_are_refused(monkeypatch):
    off = Tracing.configure("none")
    assert not off.enabled and not off.sampled({}) and off.inject() is None
    from shipml.errors import ConfigError

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin2")
    with pytest.raises(ConfigError, match="zipkin2"):
        Tracing.configure("none")
