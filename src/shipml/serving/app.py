"""The model server as an ASGI application (Open Inference Protocol V2, MLflow-style
``/invocations``, ``/predict``, health, metadata and ``/metrics``).

The inference path is a plain ASGI callable, not a framework router: it parses, validates,
batches and answers with the least work per request. Everything that can be computed at
load time (metadata bodies, lookups, metric children) is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from typing import Any

from shipml.audit import AuditLog
from shipml.errors import (
    ServingError,
    UnsupportedEncoding,
)
from shipml.loopback import REFUSAL, LoopbackHosts
from shipml.serving import binary
from shipml.serving.batching import Batcher
from shipml.serving.bodies import Bodies, ClientGone
from shipml.serving.classification import top_classes
from shipml.serving.documents import Documents
from shipml.serving.live import live_monitor
from shipml.serving.metrics import ServerMetrics
from shipml.serving.offload import Offload
from shipml.serving.predictor import Outputs, Predictor
from shipml.serving.protocol import render_predictions, render_v2
from shipml.serving.recorder import PredictionRecorder
from shipml.serving.responses import error_body, internal_error_body, json_body, send_response
from shipml.serving.tabular import body_format
from shipml.serving.tracing import Tracing
from shipml.serving.validation import Rows, Validator, shorten

log = logging.getLogger("shipml.serving")
Scope = dict[str, Any]
# Bodies larger than this are parsed, validated and scored in a worker thread, so the event
# loop keeps answering (health checks, small requests) while a big batch is scored.
OFF_LOOP_BYTES = 256 * 1024
# A scope key: the bytes a caller in process counted for this request (Bodies.reserve).
HELD = "shipml.held"
ROUTES = {"v2": "/v2/models/{name}/infer", "invocations": "/invocations", "predict": "/predict"}


# What scoring a body gives: the validated rows, the V2 request id and outputs wanted, the
# model's outputs, and which outputs go back as binary tensors (serving/binary.py).
Scored = tuple[Rows, Any, list[str] | None, Outputs, binary.BinaryOutputs | None]
# A request's Content-Length, Inference-Header-Content-Length and Content-Type headers.
Heads = tuple[bytes | None, bytes | None, bytes | None]


class ModelServer:
    """One model behind the V2 protocol. ``ready`` turns true after a warm-up prediction."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_body_bytes: int = 10 * 1024 * 1024,
        max_buffered_bytes: int = 0,
        max_batch_size: int = 64,
        max_wait_ms: float = 0.0,
        tracing: Tracing | None = None,
        audit: AuditLog | None = None,
        audit_inputs: bool = True,
        image_digest: str = "",
        attestation_key: bytes = b"",
        monitor: Any = None,
        off_loop_bytes: int = OFF_LOOP_BYTES,
        loopback: LoopbackHosts | None = None,  # bound to loopback: shipml/loopback.py
    ) -> None:
        self.predictor = predictor
        self.loopback = loopback
        self.name, self.version = predictor.name, predictor.version
        self.validator = Validator(predictor.signature)
        self.metrics = ServerMetrics(self.name, self.version, predictor.onnx_sha256)
        self.bodies = Bodies(max_body_bytes, max_buffered_bytes)
        self.off_loop_bytes = off_loop_bytes
        self._off_loop = asyncio.Semaphore(2)  # big batches scored at once (memory bound)
        self.offload = Offload(predictor.signature)
        self.tracing = tracing or Tracing(None)
        # Live drift and quality (a MonitorSection): one append per model run (the batcher
        # calls it), counted and scored off the request path (serving/live.py); with
        # feedback labels to join, one more per request (its id and prediction).
        live = self.live = monitor and live_monitor(self.metrics, predictor, monitor, audit=audit)
        self._remember = live.remember if live is not None and live.joins_feedback else None
        self.batcher = Batcher(
            predictor,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            on_batch=self.metrics.observe_batch,
            on_scored=None if live is None else live.observe,
        )
        self.audit = audit
        self.recorder = None
        if audit is not None:
            self.recorder = PredictionRecorder(
                audit,
                predictor,
                store_inputs=audit_inputs,
                image_digest=image_digest,
                attestation_key=attestation_key,
            )
        self._classifier = predictor.signature.task == "classification"
        self.ready = False
        # Generated request ids: a random per-process prefix and a counter (unique, cheap).
        self._id_prefix = uuid.uuid4().hex[:12].encode()
        self._ids = itertools.count(1)
        self.documents = Documents(predictor, self.metrics, max_batch_size)
        self._routes = own_routes(self.name, self.version)

    def warm_up(self) -> None:
        """A prediction through the whole path; the server is ready only after it works."""
        self.predictor.warm_up()
        self.ready = True

    # -- ASGI ----------------------------------------------------------------------------

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.warm_up()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.live is not None:
                    self.live.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                self.offload.close()
                if self.live is not None:
                    self.live.stop()
                if self.audit is not None:
                    self.audit.close()  # drains the writer, signs a final checkpoint
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """An HTTP request (handled here: no further coroutine for the routing), or the
        lifespan."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        # One pass over the headers: the request id, the two lengths a body may declare,
        # its type (a CSV /invocations body) and the Host (a loopback-bound server's).
        request_id = declared = header = ctype = host = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                if request_id is None:
                    request_id = value
            elif key == b"content-length":
                declared = value
            elif key == binary.HEADER and header is None:
                header = value
            elif key == b"content-type":
                ctype = value
            elif key == b"host":
                host = value
        if request_id is None:
            request_id = b"%s-%d" % (self._id_prefix, next(self._ids))
        if self.loopback is not None and not self.loopback.admits(host):
            await send_response(send, 403, json_body({"error": REFUSAL}), request_id)
            return
        if method == "POST":
            protocol = self._routes.get(path) or self._post_route(path)
            if protocol is None:
                await self._no_route(send, method, path, request_id)
                return
            await self._infer(protocol, scope, receive, send, request_id, (declared, header, ctype))
            return
        if method in ("GET", "HEAD"):
            status, body, ctype = self.documents.get(path, self.ready)
            if status == 404 and self._post_route(path) is not None:
                await self._no_route(send, method, path, request_id)
                return
            await send_response(send, status, body, request_id, ctype)
            return
        await self._no_route(send, method, path, request_id)

    async def _no_route(self, send: Any, method: str, path: str, request_id: bytes) -> None:
        """No route for ``method`` at ``path``: a 405 naming the methods the path takes
        (``Allow``, as HTTP requires), or a 404 for a path that is no endpoint."""
        if self._post_route(path) is not None:
            allow = b"POST"
        elif self.documents.get(path, self.ready)[0] != 404:
            allow = b"GET, HEAD"
        else:
            error = f"no such endpoint: {method[:20]} {shorten(path)}"  # a token: no quotes
            await send_response(send, 404, json_body({"error": error}), request_id)
            return
        takes = allow.decode()
        error = f"method {method[:20]} is not allowed on {shorten(path)}: it takes {takes}"
        await send_response(send, 405, json_body({"error": error}), request_id, allow=allow)

    def _post_route(self, path: str) -> str | None:
        """Exact routes only: ``/v2/models/NAME[/versions/V]/infer``, nothing in between."""
        if path == "/predict":
            return "predict"
        if path == "/invocations":
            return "invocations"
        if path.startswith("/v2/models/") and path.endswith("/infer"):
            parts = path[len("/v2/models/") : -len("/infer")].split("/")
            if len(parts) == 1 or (len(parts) == 3 and parts[1] == "versions"):
                return "v2"
        return None

    @property
    def max_body_bytes(self) -> int:
        return self.bodies.limit

    @max_body_bytes.setter
    def max_body_bytes(self, value: int) -> None:  # the gateway lowers it to its own
        self.bodies.limit = value

    async def _take(
        self,
        protocol: str,
        receive: Any,
        heads: Heads,
        rid: str,
        held: list[int],
    ) -> tuple[bytes, Scored]:
        """The body, read and scored, counted in the bodies held meanwhile (``held``: this
        request's count, with what the gRPC service reserved for its message)."""
        try:
            csv = protocol == "invocations" and body_format(heads[2]) == "csv"
            raw = await self.bodies.read(receive, heads[0], held)
            length = binary.header_value(heads[1])
            return raw, await self._score(protocol, raw, rid, length, csv)
        finally:
            self.bodies.release(held)

    async def _score(
        self, protocol: str, raw: bytes, rid_text: str, length: int | None = None, csv: bool = False
    ) -> Scored:
        """Small bodies on the event loop, through the batcher. Big ones off it: parsed and
        validated in a worker process (parsing millions of numbers holds the GIL, so a
        thread would not free the loop), scored in a thread."""
        tracing = self.tracing
        if len(raw) <= self.off_loop_bytes:
            if not (tracing.enabled and tracing.recording()):  # untraced: nothing built
                rows, rid, wanted, binary_out = binary.parse_request(
                    protocol, raw, length, self.validator, csv
                )
                return rows, rid, wanted, await self.batcher.predict(rows), binary_out
            return await self._score_traced(protocol, raw, rid_text, length, csv)
        async with self._off_loop:
            with tracing.span("validate"):
                rows, rid, wanted, binary_out = await self.offload.parse(protocol, raw, length, csv)
            with tracing.span("model", **{"shipml.batch.rows": rows.n}):
                feeds = self.predictor.feeds(rows)
                outputs = await asyncio.to_thread(self.predictor.run, feeds)
            if self.live is not None:
                self.live.observe(rows, outputs.labels)
            return rows, rid, wanted, outputs, binary_out

    async def _score_traced(
        self, protocol: str, raw: bytes, rid_text: str, length: int | None, csv: bool
    ) -> Scored:
        """``_score``'s small-body path for a traced request: timed, then recorded as the
        ``validate``, ``batch`` and ``model`` spans in one call (``Tracing.scored``)."""
        tracing = self.tracing
        begun = time.time_ns()
        try:
            rows, rid, wanted, binary_out = binary.parse_request(
                protocol, raw, length, self.validator, csv
            )
        except BaseException as exc:
            tracing.scored(begun, None, time.time_ns(), rid_text, None, exc)
            raise
        parsed = time.time_ns()
        try:
            outputs = await self.batcher.predict(rows)
        except BaseException as exc:
            tracing.scored(begun, parsed, time.time_ns(), rid_text, None, exc)
            raise
        tracing.scored(begun, parsed, time.time_ns(), rid_text, outputs.timing)
        return rows, rid, wanted, outputs, binary_out

    def _render(
        self, protocol: str, outputs: Outputs, rid: Any, wanted: Any, binary_out: Any
    ) -> tuple[bytes, int | None]:
        """The answer's body (and, for a binary V2 answer, its JSON header's length)."""
        if protocol == "v2":
            body = render_v2(
                outputs,
                model=self.name,
                version=self.version,
                request_id=rid,
                wanted=wanted,
                label_type=self.predictor.signature.label_type,
            )
            if binary_out is not None and binary_out.top:
                top_classes(body, binary_out.top, self.predictor.signature.classes)
            return binary.render(body, binary_out)
        classes = self.predictor.classes
        return json_body(render_predictions(outputs, classes, detailed=protocol == "predict")), None

    async def _infer(
        self,
        protocol: str,
        scope: Scope,
        receive: Any,
        send: Any,
        request_id: bytes,
        heads: Heads,
    ) -> None:
        """``heads``: the request's Content-Length, Inference-Header-Content-Length and
        Content-Type."""
        started = time.perf_counter()
        metrics = self.metrics
        metrics.in_flight += 1
        code = 200
        outputs: Outputs | None = None
        head: int | None = None  # the JSON header's length in a binary answer
        tracing = self.tracing
        try:
            rid_text = request_id.decode("latin-1") if tracing.enabled else ""
            route = ROUTES[protocol]
            with tracing.request_span(
                "POST", route, scope["path"], scope["headers"], rid_text
            ) as span:
                try:
                    if protocol == "v2" and scope["path"] not in self._routes:
                        self.documents.check_model(v2_model_path(scope["path"]))
                    # a gRPC call's message is counted already (serving/grpc.py)
                    held = scope.get(HELD) or [0]
                    raw, (rows, rid, wanted, outputs, binary_out) = await self._take(
                        protocol, receive, heads, rid_text, held
                    )
                    if self._remember is not None:
                        self._remember(request_id, outputs.labels)
                    if self.recorder is not None:
                        await self.recorder.record(
                            scope, request_id, protocol, rows, raw, outputs, started, span
                        )
                    payload, head = self._render(protocol, outputs, rid, wanted, binary_out)
                except ServingError as exc:
                    error = undecoded(scope["headers"], exc)
                    code, payload = error.status, error_body(error)
                except ClientGone:
                    code = 499  # nginx's "client closed request": counted, never sent
                    return
                except Exception as exc:  # a bug: answer 500 with a message, log the traceback
                    log.exception("unexpected error while serving a request")
                    code, payload = 500, internal_error_body(exc)
                if span is not None:
                    span.set_attribute("http.response.status_code", code)
            binary_head = () if head is None else (binary.OCTETS, head)
            await send_response(send, code, payload, request_id, *binary_head)
        finally:
            metrics.in_flight -= 1
            # the gRPC service (serving/grpc.py) calls this app: counted as "grpc"
            metrics.observe(
                scope.get("shipml.protocol", protocol), code, time.perf_counter() - started
            )
            if outputs is not None and self._classifier:
                metrics.count_classes(outputs.labels)  # bounded: one series per class


def own_routes(name: str, version: str) -> dict[str, str]:
    """A model's own inference paths and their protocols, found with one lookup (no
    parsing, no check); other paths take the general route."""
    routes = {"/predict": "predict", "/invocations": "invocations"}
    if "/" not in name + version:  # else the general route refuses them
        v2 = f"/v2/models/{name}"
        routes |= {f"{v2}/infer": "v2", f"{v2}/versions/{version}/infer": "v2"}
    return routes


def undecoded(headers: list[tuple[bytes, bytes]], error: ServingError) -> ServingError:
    """``error``, or, when the request's body did not parse because it came compressed
    (``Content-Encoding: gzip``, as tritonclient sends with request compression on), a
    415 that says so. Looked for only once a body was refused: no cost to a valid one."""
    if error.status != 400:
        return error
    for key, value in headers:
        if key == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            return UnsupportedEncoding(
                f"Content-Encoding {shorten(value.decode('latin-1'))} is not supported: "
                "this server reads request bodies uncompressed",
                hint="send the body uncompressed (tritonclient: no request_compression_algorithm)",
            )
    return error


def v2_model_path(path: str) -> list[str]:
    """The model (and version) parts of a V2 inference path, for the general route's check."""
    return path[len("/v2/models/") : -len("/infer")].split("/")
