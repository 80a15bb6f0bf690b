"""Traces people can use: a request through the gateway and a model server reaches an
OTLP receiver (HTTP/protobuf, decoded here with opentelemetry-proto) as one trace —
gateway → server → batch → model — every span carrying the request id; sampling keeps
the ratio asked for and creates no span for the others; an upstream traceparent is
obeyed and a forged or malformed one ignored; a dead or refusing collector costs the
answers nothing; the exporter process ends with the server, even after kill -9."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shipml.rollout.gateway import Gateway
from shipml.rollout.policy import TrafficPolicy, Variant
from shipml.serving.otlp import Exporter
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
                                    "attributes": attrs,
                                    "kind": s.kind,
                                    "status": s.status.code,
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
    r.server.server_close()


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
    assert spans["validate"]["parent"] == spans["POST /predict"]["id"]
    assert spans["batch"]["parent"] == spans["POST /predict"]["id"]
    assert spans["model"]["parent"] == spans["batch"]["id"]
    assert spans["model"]["attributes"]["shipml.batch.rows"].int_value == 1
    assert {s["status"] for s in receiver.spans} == {0}  # none failed
    assert spans["gateway champion"]["service"] == "shipml-gateway"
    assert spans["model"]["service"] == "shipml-serve"
    for name in ("gateway champion", "POST /predict", "batch"):
        assert spans[name]["request_id"] == "r-42"


def test_a_request_that_fails_validation_has_a_failed_validate_span_and_no_batch(
    cancer_package, receiver
):
    otlp = {"exporter": "otlp", "endpoint": receiver.url, "sampling_ratio": 1.0}
    server = build_app(ServeSpec(str(cancer_package.path), "cancer", tracing=otlp))
    server.warm_up()
    body = orjson.dumps({"instances": [{"no such column": 1.0}]})
    status, _ = asyncio.run(_post(server, "/predict", body, [(b"x-request-id", b"r-bad")]))
    assert status == 400
    server.tracing.flush()
    spans = {s["name"]: s for s in receiver.spans}
    assert set(spans) == {"POST /predict", "validate"}
    assert spans["validate"]["parent"] == spans["POST /predict"]["id"]
    assert spans["validate"]["status"] == 2  # STATUS_CODE_ERROR, with what went wrong
    assert spans["POST /predict"]["attributes"]["http.response.status_code"].int_value == 400


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
    assert len(receiver.spans) == 21 * 4  # an unsampled request made no child span either
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


def _send_all(app: Any, bodies: list[tuple[bytes, list]]) -> list[int]:
    async def go() -> list[int]:
        return [(await _post(app, "/predict", body, headers))[0] for body, headers in bodies]

    return asyncio.run(go())


def test_the_traceparent_is_followed_and_forged_ones_are_ignored(
    cancer_package, cancer_data, receiver
):
    otlp = {"exporter": "otlp", "endpoint": receiver.url, "sampling_ratio": 1.0}
    server = build_app(ServeSpec(str(cancer_package.path), "cancer", tracing=otlp))
    server.warm_up()
    row = _row(cancer_data)
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    forged = [
        b"not a traceparent",
        b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01",  # an all-zero trace id
        b"ff-" + trace.encode() + b"-00f067aa0ba902b7-01",  # version ff is invalid
        b"00-" + trace.encode() + b"-00f067aa0ba902b7-01" + b"x" * 5000,  # huge
        b"00-ZZf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ]
    bodies = [(row, [(b"traceparent", f"00-{trace}-00f067aa0ba902b7-01".encode())])]
    bodies += [
        (row, [(b"traceparent", f), (b"x-request-id", f"forged-{i}".encode())])
        for i, f in enumerate(forged)
    ]
    bodies.append(
        (row, [(b"traceparent", f"00-{trace}-00f067aa0ba902b7-00".encode())])
    )  # unsampled
    assert _send_all(server, bodies) == [200] * len(bodies)
    server.tracing.flush()
    roots = [s for s in receiver.spans if s["name"] == "POST /predict"]
    followed = next(s for s in roots if s["trace"] == trace)
    assert followed["parent"] == "00f067aa0ba902b7" and followed["kind"] == 2  # SERVER
    assert followed["attributes"]["http.response.status_code"].int_value == 200
    assert followed["attributes"]["http.request.method"].string_value == "POST"
    children = {s["name"]: s for s in receiver.spans if s["trace"] == trace}
    assert children["batch"]["parent"] == followed["id"]
    assert children["model"]["parent"] == children["batch"]["id"]
    assert children["model"]["attributes"]["shipml.batch.rows"].int_value == 1
    # every forged traceparent started a trace of its own, with no parent; the unsampled
    # one (flag 00) made no span at all
    mine = {s["request_id"]: s for s in roots if s["request_id"].startswith("forged-")}
    assert set(mine) == {f"forged-{i}" for i in range(len(forged))}
    assert all(s["parent"] == "" and s["trace"] != trace for s in mine.values())
    assert len(roots) == 1 + len(forged)


def test_a_dead_collector_costs_the_answers_nothing(cancer_package, cancer_data):
    from tests.serving.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    otlp = {"exporter": "otlp", "endpoint": dead, "sampling_ratio": 1.0}
    server = build_app(ServeSpec(str(cancer_package.path), "cancer", tracing=otlp))
    server.warm_up()
    bodies = [(_row(cancer_data), [(b"x-request-id", f"d{i}".encode())]) for i in range(20)]
    assert _send_all(server, bodies) == [200] * 20
    counts = server.tracing.exporter.flush()
    assert counts == {"sent": 0, "failed": 20 * 4}  # counted, and the answers were all 200
    server.tracing.shutdown()


def test_the_exporter_queue_is_bounded_and_odd_attributes_are_sent_plain(receiver):
    import numpy as np

    from shipml.serving.otlp import Exporter
    from shipml.serving.spans import Span

    exporter = Exporter("bounded", endpoint=receiver.url, interval_s=3600)
    exporter.QUEUE = 50
    exporter._thread = object()  # as if started: nothing drains while spans are added
    for i in range(200):
        attributes = {"n": np.int64(i), "x": np.float32(0.5), "odd": [i], "i": i}
        exporter.add(Span(exporter, "s", 1, 0, 1, attributes).fields())
    assert len(exporter.queue) == 50 and exporter.dropped == 150
    assert exporter.flush() == {"sent": 50, "failed": 0}
    sent = [s for s in receiver.spans if s["service"] == "bounded"]
    assert [s["attributes"]["n"].int_value for s in sent] == list(range(150, 200))
    first = sent[0]["attributes"]
    assert first["x"].double_value == 0.5 and first["odd"].string_value == "[150]"
    assert first["i"].int_value == 150
    exporter._thread = None
    exporter.shutdown()


def test_the_exporter_process_ends_with_the_server_even_after_kill_9(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import psutil

    script = (
        "import time\n"
        "from shipml.serving.tracing import Tracing\n"
        "t = Tracing.configure('otlp', endpoint='http://127.0.0.1:9/v1/traces')\n"
        "with t.request_span('POST', '/predict', '/predict', {}, 'k'):\n"
        "    pass\n"
        "t.exporter._hand_over()\n"
        "print(t.exporter._child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(server.stdout.readline()))
    assert child.is_running() and child.ppid() == server.pid
    os.kill(server.pid, signal.SIGKILL)
    server.wait(timeout=10)
    child.wait(timeout=30)  # its input ended: it sends what it has and exits
    assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE


def test_spans_grouped_on_the_request_path_are_all_sent_while_the_thread_takes_them(
    receiver,
):
    """Requests' spans wait to be marshalled sixteen requests at a time; the exporter
    thread takes them as well, from another thread: none lost, none twice."""
    import threading

    tracing = Tracing(Exporter("grouped", endpoint=receiver.url, interval_s=0.001), ratio=1.0)

    def requests(first: int) -> None:
        for i in range(first, first + 500):
            with tracing.request_span("POST", "/predict", "/predict", {}, f"g-{i}"):
                with tracing.span("validate"):
                    pass
                with tracing.span("model", **{"shipml.batch.rows": np.int64(1)}):
                    pass

    threads = [threading.Thread(target=requests, args=(n * 500,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracing.exporter is not None
    assert tracing.exporter.flush() == {"sent": 3000, "failed": 0}
    sent = [s for s in receiver.spans if s["service"] == "grouped"]
    roots = sorted(s["request_id"] for s in sent if s["name"] == "POST /predict")
    assert roots == sorted(f"g-{i}" for i in range(1000))
    models = [s for s in sent if s["name"] == "model"]
    assert len(models) == 1000 and {
        m["attributes"]["shipml.batch.rows"].int_value for m in models
    } == {1}
    tracing.shutdown()


def test_the_console_exporter_prints_json_lines(capfd):
    import json

    tracing = Tracing.configure("console", service="printed")
    with (
        tracing.request_span("POST", "/predict", "/predict", {}, "c-1"),
        tracing.span("batch", **{"shipml.request_id": "c-1"}),
    ):
        pass
    tracing.flush()
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line]
    assert [(s["name"], s["service"]) for s in lines] == [
        ("batch", "printed"),
        ("POST /predict", "printed"),
    ]
    assert lines[0]["parent_id"] == lines[1]["span_id"]
    with tracing.request_span("POST", "/predict", "/predict", {}, "c-2"):
        tracing.scored(10, 20, 40, "c-2", (25, 35, 3))  # a scored request's spans at once
    tracing.flush()
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line]
    by_name = {s["name"]: s for s in lines}
    assert [s["name"] for s in lines] == ["validate", "batch", "model", "POST /predict"]
    assert by_name["validate"]["parent_id"] == by_name["POST /predict"]["span_id"]
    assert by_name["model"]["parent_id"] == by_name["batch"]["span_id"]
    assert by_name["batch"]["attributes"] == {"shipml.request_id": "c-2"}
    assert (by_name["model"]["start_unix_nano"], by_name["model"]["end_unix_nano"]) == (25, 35)
    assert by_name["model"]["attributes"] == {"shipml.batch.rows": 3}
    tracing.shutdown()


def test_an_audited_traced_prediction_records_its_trace_id(
    tmp_path, penguins_package, penguins_data, receiver
):
    from starlette.testclient import TestClient

    from shipml.audit import AuditLog
    from shipml.serving import ModelServer, Predictor

    X, _ = penguins_data
    log = AuditLog(tmp_path / "a.db", signing_key=tmp_path / "k.pem")
    predictor = Predictor.load(penguins_package.path, name="penguins", version="1")
    tracing = Tracing.configure("otlp", endpoint=receiver.url)
    server = ModelServer(predictor, audit=log, tracing=tracing)
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in X.iloc[0].items()}
    row = {k: (None if v != v else v) for k, v in row.items()}
    with TestClient(server) as client:
        resp = client.post("/predict", json={"instances": [row]}, headers={"X-Request-ID": "t-1"})
    assert resp.status_code == 200, resp.text
    tracing.flush()
    (record,) = AuditLog(tmp_path / "a.db", writer=False).find("t-1")
    (root,) = [s for s in receiver.spans if s["name"] == "POST /predict"]
    assert record["trace_id"] == root["trace"]
    tracing.shutdown()


def test_the_request_span_reads_as_the_span_it_sends():
    """The server's request span is queued as one record (``span_records.Served``); read
    as a span (name, kind, ``fields``) it is the span that record expands to, and an
    attribute other than the status code is kept."""
    from shipml.serving.span_records import SERVED, expand_served

    exporter = Exporter("t", endpoint="http://127.0.0.1:9/v1/traces")
    exporter._thread = object()  # type: ignore[assignment]  # as if started: nothing sent
    queued: list = []
    exporter.queue_plain = lambda spans, now=False: queued.extend(spans)  # type: ignore[method-assign]
    tracing = Tracing(exporter, ratio=1.0)
    with tracing.request_span("POST", "/predict", "/predict", [], "r-1") as span:
        assert (span.name, span.kind) == ("POST /predict", 2)
        span.set_attribute("http.response.status_code", 200)
        span.set_attribute("shipml.batch.rows", np.int64(3))
    (record,) = queued
    assert record[0] == SERVED and expand_served(record) == span.fields()
    assert span.fields()[7] == {
        "http.request.method": "POST",
        "http.route": "/predict",
        "url.path": "/predict",
        "shipml.request_id": "r-1",
        "shipml.batch.rows": 3,
        "http.response.status_code": 200,
    }
