"""The Open Inference Protocol's gRPC service (KServe's ``grpc_predict_v2.proto``, package
``inference``), on a second port of the model server (``shipml[grpc]``).

The service is an adapter, not a second server: each call becomes a request to the same
ASGI app the HTTP port serves, in process. ``ModelInfer`` turns its tensors into a binary
V2 request (``raw_input_contents`` are already in the binary extension's layout; typed
``contents`` are packed into it) and reads the binary answer back into
``raw_output_contents``. So the one validator, the one batcher, the metrics (protocol
``grpc``), tracing and the audit log see gRPC requests exactly as HTTP ones, and an error
is the app's message with the gRPC code of its HTTP status.

Messages come from grpc_descriptor.py, loaded into a private descriptor pool: the
generated ``*_pb2`` modules of tritonclient and KServe register the same message names
in protobuf's default pool, and a second copy there would clash.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from shipml.errors import ConfigError, ServerBusy
from shipml.processes import cannot_listen
from shipml.serving import binary
from shipml.serving.app import HELD
from shipml.serving.connection import ConnectionLimits
from shipml.serving.grpc_messages import (
    Messages,
    Refused,
    checked,
    infer_body,
    infer_response,
    metadata_response,
    model_path,
)
from shipml.serving.validation import shorten

log = logging.getLogger("shipml.serving")
SERVICE = "inference.GRPCInferenceService"
# Metadata a call may carry into the app as HTTP headers (the rest is not read).
FORWARDED = ("x-request-id", "traceparent", "tracestate", "x-shipml-variant")
MAX_MESSAGE_BYTES = 2**31 - 1  # the most grpcio takes (a larger max_body_bytes: this)
MAX_CONCURRENT_RPCS = 1000  # beyond: RESOURCE_EXHAUSTED at once, never an unbounded queue


# Typed ``contents`` fields per datatype, and the datatype their values are packed as.
def require_grpc() -> Any:
    """The grpc module, or a ConfigError naming the extra to install."""
    try:
        import grpc
        import grpc.aio
    except ImportError as exc:
        raise ConfigError(
            f"the gRPC port needs the grpc extra ({exc.name} is not installed)",
            hint="pip install 'shipml[grpc]', or serve without --grpc-port / [serving] grpc_port",
        ) from exc
    return grpc


async def call_app(
    app: Any,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    held: list[int] | None = None,
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request to the ASGI app, in process: its status, headers and body. ``held``:
    the bytes counted for it already (``Bodies.reserve``), which the app releases."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "2",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": None,
        "server": None,
        "shipml.protocol": "grpc",  # the protocol label of the app's metrics
        HELD: held,
    }
    sent = False
    answer: dict[str, Any] = {"status": 500, "headers": [], "body": []}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # nothing more will come (the app never asks)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], message["headers"]
        elif message["type"] == "http.response.body":
            answer["body"].append(message.get("body", b""))

    await app(scope, receive, send)
    return answer["status"], dict(answer["headers"]), b"".join(answer["body"])


def port_free(host: str, port: int) -> None:
    """A ConfigError now, rather than a failed start later, if the gRPC port is taken."""
    reason = cannot_listen(host, port)
    if reason is not None:
        raise ConfigError(
            f"cannot listen for gRPC on {host}:{port}: {reason}",
            hint="choose another --grpc-port (or [serving] grpc_port)",
        )


class GrpcService:
    """The gRPC server in front of one app, on the app's event loop (so a gRPC request
    joins the same batches as HTTP ones); started and stopped with the app's lifespan."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = 10 * 1024 * 1024,
        limits: ConnectionLimits | None = None,
        reuse_port: bool = False,
        grace_s: float = 10.0,
    ) -> None:
        self.grpc = require_grpc()
        self.messages = Messages()
        self.app, self.host, self.port = app, host, port
        self.grace_s = grace_s
        limits = limits or ConnectionLimits()
        self.options = [
            # grpcio takes a C int here; protobuf never parses a message of 2 GiB anyway
            ("grpc.max_receive_message_length", min(max_message_bytes, MAX_MESSAGE_BYTES)),
            ("grpc.max_metadata_size", limits.max_header_bytes),
            ("grpc.max_connection_idle_ms", int(limits.idle_timeout_s * 1000)),
            ("grpc.server_handshake_timeout_ms", int(limits.header_timeout_s * 1000)),
            # per connection as for the whole server: at 100, a client process over 100
            # calls at once on its connection got REFUSED_STREAM resets, which its
            # channels report as UNAVAILABLE "Stream removed", never retried
            ("grpc.max_concurrent_streams", MAX_CONCURRENT_RPCS),
            # several uvicorn workers each run this server on one port (the kernel spreads
            # connections); a lone server refuses a port another process holds
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
        self.server: Any = None
        self._calls: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        """Listen; the bound port (``port`` 0 picks a free one)."""
        grpc = self.grpc
        server = grpc.aio.server(options=self.options, maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS)
        server.add_generic_rpc_handlers((self._handlers(),))
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            self.port = server.add_insecure_port(f"{host}:{self.port}")
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot listen for gRPC on {self.host}:{self.port}: {exc}",
                hint="choose another --grpc-port (or [serving] grpc_port)",
            ) from exc
        await server.start()
        self.server = server
        log.info("gRPC (V2) on %s:%d", self.host, self.port)
        return int(self.port)

    async def stop(self) -> None:
        """Refuse new calls, let in-flight ones finish (up to the grace time)."""
        if self.server is not None:
            await self.server.stop(self.grace_s)
            self.server = None

    # -- the calls ---------------------------------------------------------------------
    def _handlers(self) -> Any:
        grpc, m = self.grpc, self.messages
        calls = {
            "ServerLive": (m.ServerLiveRequest, self._live),
            "ServerReady": (m.ServerReadyRequest, self._ready),
            "ModelReady": (m.ModelReadyRequest, self._model_ready),
            "ServerMetadata": (m.ServerMetadataRequest, self._server_metadata),
            "ModelMetadata": (m.ModelMetadataRequest, self._model_metadata),
            "ModelInfer": (m.ModelInferRequest, self._infer),
        }
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    self._guarded(name, kind, call),
                    request_deserializer=None,  # parsed in _guarded: garbage is our 400
                    response_serializer=lambda message: message.SerializeToString(),
                )
                for name, (kind, call) in calls.items()
            },
        )

    def _guarded(self, name: str, kind: Any, call: Any) -> Any:
        """A handler that parses its request itself and answers every refusal with its
        status (a message that does not parse is INVALID_ARGUMENT, not INTERNAL)."""
        grpc, decode_error, bodies = self.grpc, self.messages.DecodeError, self.app.bodies
        counted = name == "ModelInfer"

        async def handler(raw: bytes, context: Any) -> Any:
            held = [0]
            try:
                try:
                    # a request's tensors count before they are parsed (a copy) and packed
                    # (another), as an HTTP body does: the gRPC port holds no more than
                    # [serving] max_buffered_bytes (health and metadata calls are not held)
                    if counted:
                        held = bodies.reserve(len(raw))
                except ServerBusy as exc:
                    raise Refused("UNAVAILABLE", f"{exc.message} ({exc.hint})") from exc
                try:
                    request = kind.FromString(raw)
                except decode_error as exc:
                    raise Refused(
                        "INVALID_ARGUMENT", f"malformed {name} request: {shorten(str(exc))}"
                    ) from exc
                return await call(request, context, held)
            except Refused as exc:
                await context.abort(getattr(grpc.StatusCode, exc.code), exc.message[:1000])
            finally:
                bodies.release(held)

        return handler

    async def _live(self, request: Any, context: Any, held: list[int]) -> Any:
        return self.messages.ServerLiveResponse(live=True)

    async def _ready(self, request: Any, context: Any, held: list[int]) -> Any:
        return self.messages.ServerReadyResponse(ready=bool(self.app.ready))

    async def _get(self, path: str) -> Any:
        """The JSON of a GET to the app (an error status becomes the call's)."""
        status, _, body = await call_app(self.app, "GET", path, [])
        return orjson.loads(checked(status, body))

    async def _model_ready(self, request: Any, context: Any, held: list[int]) -> Any:
        path = model_path(request.name, request.version, "/ready")
        status, _, body = await call_app(self.app, "GET", path, [])
        ready = status != 503 and bool(orjson.loads(checked(status, body))["ready"])
        return self.messages.ModelReadyResponse(ready=ready)

    async def _server_metadata(self, request: Any, context: Any, held: list[int]) -> Any:
        meta = await self._get("/v2")
        return self.messages.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    async def _model_metadata(self, request: Any, context: Any, held: list[int]) -> Any:
        meta = await self._get(model_path(request.name, request.version, ""))
        return metadata_response(self.messages, meta)

    async def _infer(self, request: Any, context: Any, held: list[int]) -> Any:
        path = model_path(request.model_name, request.model_version, "/infer")
        body, head, raw = infer_body(request)
        headers = [(binary.HEADER, str(head).encode()), (b"content-type", binary.OCTETS)]
        for key, value in context.invocation_metadata() or ():
            if key in FORWARDED and isinstance(value, str):
                headers.append((key.encode(), value.encode("latin-1", "replace")))
        # A cancelled call does not cancel its request: like an HTTP request whose client
        # left, it is scored and audited to the end (nothing half-recorded), its bytes
        # counted until then (the request owns the count now, not this handler).
        mine, held[0] = [held[0]], 0
        task = asyncio.ensure_future(call_app(self.app, "POST", path, headers, body, mine))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        # the app releases it once it has read and scored the body; one it refused before
        # reading (an unknown model) is released here
        task.add_done_callback(lambda _: self.app.bodies.release(mine))
        status, answer_headers, answer = await asyncio.shield(task)
        request_id = answer_headers.get(b"x-request-id")
        if request_id:
            context.set_trailing_metadata((("x-request-id", request_id.decode("latin-1")),))
        answer = checked(status, answer)
        return infer_response(self.messages, answer, int(answer_headers[binary.HEADER]), raw)


class WithGrpc:
    """An ASGI app whose lifespan also starts and stops its gRPC service."""

    def __init__(self, app: Any, service: GrpcService) -> None:
        self.app, self.service = app, service

    def __getattr__(self, name: str) -> Any:  # ready, metrics...: the app's
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        service = self.service

        async def started(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    await service.start()
                except Exception as exc:
                    text = exc.message if isinstance(exc, ConfigError) else repr(exc)
                    await send({"type": "lifespan.startup.failed", "message": text})
                    return
            await send(message)

        async def stopping() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "lifespan.shutdown":
                await service.stop()  # before the app closes its audit log
            return message

        await self.app(scope, stopping, started)
