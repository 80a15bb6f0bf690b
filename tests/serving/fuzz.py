"""A request fuzzer for any HTTP server: an ASGI app (called in process) or a URL.

Hypothesis generates the requests: valid bodies of each endpoint with one value replaced
(wrong types, non-finite numbers, huge and deeply nested values, long strings), arbitrary
JSON, raw bytes and truncated bodies, non-finite literals in the text, other methods and
mangled paths. Nothing is shrunk or stored: the run is a fixed number of requests, and
every answer of 500 or more is recorded with the request that caused it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

LITERALS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1e39", "nan", "inf"]
DEEP = "\u2063deep"  # stands for 5,000 nested lists (written as text: json cannot)
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    bodies: tuple[Any, ...] = ()  # valid bodies (JSON values) to mutate
    # valid binary tensor bodies (JSON header, tensor bytes) to mutate
    binary: tuple[tuple[Any, bytes], ...] = ()


@dataclass
class Failure:
    method: str
    path: str
    body: bytes
    status: int
    answer: bytes

    def __str__(self) -> str:
        return (
            f"{self.method} {self.path[:120]} body={self.body[:200]!r} -> {self.status} "
            f"{self.answer[:200]!r}"
        )


@dataclass
class FuzzReport:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    per_endpoint: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**30), max_value=10**30)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=30)
        | st.sampled_from(["", "BYTES", "FP32", "Biscoe", "a" * 5000, "\x00", "☃"])
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
        max_leaves=max_leaves,
    )


VALUES = json_values() | st.sampled_from([DEEP, [None] * 10000, {"a": 1}, []])
ANY_JSON = json_values(max_leaves=40)


def _pick(draw: st.DrawFn, items: Any) -> Any:
    return items[draw(st.integers(0, len(items) - 1))]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a JSON document (the root included)."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


def _replace(doc: Any, where: tuple[Any, ...], value: Any) -> Any:
    if not where:
        return value
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[where[0]] = _replace(doc[where[0]], where[1:], value)
    return copy


# JSON, what curl and browsers send by default, and the types /invocations reads otherwise
# (CSV) or refuses (Parquet, a charset other than UTF-8)
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "x/y",
    "text/csv",
    "text/csv; charset=utf-16",
    "application/vnd.apache.parquet",
]


@st.composite
def requests(
    draw: st.DrawFn, endpoints: list[Endpoint]
) -> tuple[str, str, dict[str, str | bytes], bytes]:
    """(method, path, headers, body) of one hostile request."""
    endpoint = _pick(draw, endpoints)
    if not endpoint.bodies and draw(st.integers(0, 3)):  # bodies are where the bugs hide
        endpoint = _pick(draw, [e for e in endpoints if e.bodies] or endpoints)
    method = endpoint.method if draw(st.integers(0, 9)) else draw(st.sampled_from(METHODS))
    path = endpoint.path
    mangle = draw(st.integers(0, 11))
    if mangle == 0:
        path += "/" + draw(st.sampled_from(["x", "x/y/z", "", "..", "%2e%2e", "infer"]))
    elif mangle == 1:
        path = path.replace("/", draw(st.sampled_from(["//", "/./", "/%2F"])), 1)
    elif mangle == 2:
        path += draw(st.sampled_from(["?x=1", "#f", "%00", "%ff", "/☃", "a" * 3000]))
    headers: dict[str, str | bytes] = {"content-type": draw(st.sampled_from(CONTENT_TYPES))}
    if draw(st.integers(0, 7)) == 0:
        headers["x-request-id"] = draw(st.sampled_from([b"", b"r" * 2000, b"a b", b"\xe9"]))
    if endpoint.binary and draw(st.integers(0, 2)) == 0:
        body, length = draw(binary_bodies(endpoint.binary))
        headers["inference-header-content-length"] = length
        return method, path, headers, body
    kind = draw(st.integers(0, 9)) if endpoint.bodies else 9
    if kind <= 4:  # a valid body with one value replaced
        doc = _pick(draw, endpoint.bodies)
        where = _pick(draw, _paths(doc))
        value = draw(VALUES)
        text = json.dumps(_replace(doc, where, value))
        body = text.replace(f'"{DEEP}"', "[" * 5000 + "1" + "]" * 5000).encode()
    elif kind == 5:  # a number of a valid body written as a non-finite literal
        text = json.dumps(_pick(draw, endpoint.bodies))
        literal = draw(st.sampled_from(LITERALS))
        body = text.replace("1.0", literal, 1).replace("0.5", literal, 1).encode()
        if body == text.encode():
            body = text.replace("[", f"[{literal}, ", 1).encode()
    elif kind == 6:  # a truncated valid body
        text = json.dumps(_pick(draw, endpoint.bodies)).encode()
        body = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif kind == 7:
        body = draw(st.binary(max_size=200))
    else:  # any JSON at all
        body = json.dumps(draw(ANY_JSON)).encode()
    return method, path, headers, body


@st.composite
def binary_bodies(draw: st.DrawFn, valid: tuple[tuple[Any, bytes], ...]) -> tuple[bytes, str]:
    """(body, Inference-Header-Content-Length) of a hostile binary tensor request: a value
    of the JSON header replaced (sizes, shapes, datatypes...), the tensor bytes cut, padded
    or random, or a header length that lies."""
    header, blob = _pick(draw, valid)
    kind = draw(st.integers(0, 4))
    if kind <= 1:
        where = _pick(draw, _paths(header))
        header = _replace(header, where, draw(VALUES | st.integers(-5, 10**12)))
    elif kind == 2:
        blob = blob[: draw(st.integers(0, len(blob)))] + draw(st.binary(max_size=16))
    elif kind == 3:
        blob = draw(st.binary(max_size=len(blob) + 8))
    text = json.dumps(header).replace(f'"{DEEP}"', "[" * 5000 + "1" + "]" * 5000).encode()
    length = str(len(text))
    if kind == 4:
        length = draw(st.sampled_from(["-1", "", "x", "9" * 30, "0", str(len(text) + 5)]))
    return text + blob, length


def fuzz(target: Any, endpoints: list[Endpoint], *, examples: int) -> FuzzReport:
    """Send ``examples`` generated requests to ``target`` (an ASGI app or a base URL)."""
    report = FuzzReport()
    loop = asyncio.new_event_loop()
    transport = (
        None
        if isinstance(target, str)
        else httpx.ASGITransport(app=target, raise_app_exceptions=False)  # a crash is a 500
    )
    base = target if isinstance(target, str) else "http://fuzz"
    client = httpx.AsyncClient(transport=transport, base_url=base, timeout=30)

    @settings(
        max_examples=examples,
        phases=[Phase.generate],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(endpoints))
    def one(request: tuple[str, str, dict[str, str | bytes], bytes]) -> None:
        method, path, headers, body = request
        status, answer = loop.run_until_complete(_send(client, method, path, headers, body))
        report.sent += 1
        report.statuses[status] += 1
        report.per_endpoint[path.split("?")[0][:40]] += 1
        if status >= 500 or status == 0:
            report.failures.append(Failure(method, path, body, status, answer))

    try:
        one()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    return report


async def _send(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str | bytes], body: bytes
) -> tuple[int, bytes]:
    try:
        resp = await client.request(method, path, headers=headers, content=body or None)
    except httpx.InvalidURL:
        return 400, b"(the client refused the URL)"
    except httpx.TransportError as exc:  # the server closed or broke the connection
        return 0, repr(exc).encode()
    return resp.status_code, resp.content


# -- gRPC ----------------------------------------------------------------------------------
GRPC_METHODS = ["ModelInfer", "ModelMetadata", "ModelReady", "ServerLive", "ServerMetadata"]
GRPC_FAILURES = {"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS"}  # the 5xx of gRPC
DATATYPES = ["FP32", "FP64", "FP16", "BF16", "INT64", "INT8", "UINT64", "BOOL", "BYTES", "", "x"]


@st.composite
def grpc_calls(draw: st.DrawFn, valid: Any) -> tuple[str, bytes]:
    """(method, body) of one hostile gRPC call: ``valid`` (a ModelInferRequest) with its
    fields changed (shapes, datatypes, names, raw contents cut or random, typed contents
    beside raw ones, inputs dropped or doubled), or random bytes to any method."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(GRPC_METHODS)), draw(st.binary(max_size=300))
    request = type(valid).FromString(valid.SerializeToString())
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(request.inputs) - 1))
        tensor = request.inputs[i]
        change = draw(st.integers(0, 8))
        if change == 0:
            del tensor.shape[:]
            tensor.shape.extend(draw(st.lists(st.integers(-3, 10**15), max_size=4)))
        elif change == 1:
            tensor.datatype = draw(st.sampled_from(DATATYPES))
        elif change == 2:
            tensor.name = draw(st.text(max_size=20) | st.sampled_from(["input", ""]))
        elif change == 3 and len(request.raw_input_contents) > i:
            raw = request.raw_input_contents[i]
            request.raw_input_contents[i] = raw[: draw(st.integers(0, len(raw)))]
        elif change == 4 and len(request.raw_input_contents) > i:
            request.raw_input_contents[i] = draw(st.binary(max_size=64))
        elif change == 5:
            tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(), max_size=4)))
        elif change == 6:
            del request.raw_input_contents[:]
        elif change == 7:
            request.inputs.add().CopyFrom(tensor)
        else:
            request.model_name = draw(st.sampled_from(["", "x", "penguins/versions/1", "☃"]))
            request.model_version = draw(st.sampled_from(["", "1", "2", "../1"]))
    return "ModelInfer", request.SerializeToString()


def fuzz_grpc(address: str, valid: Any, *, examples: int) -> FuzzReport:
    """Send ``examples`` generated calls to the V2 gRPC service at ``address``."""
    import grpc

    report = FuzzReport()
    channel = grpc.insecure_channel(address)

    @settings(
        max_examples=examples,
        phases=[Phase.generate],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(grpc_calls(valid))
    def one(call: tuple[str, bytes]) -> None:
        method, body = call
        try:
            channel.unary_unary(f"/inference.GRPCInferenceService/{method}")(body, timeout=30)
            code, details = "OK", ""
        except grpc.RpcError as exc:
            code, details = exc.code().name, exc.details() or ""
        report.sent += 1
        report.statuses[code] += 1  # type: ignore[index]
        report.per_endpoint[method] += 1
        if code in GRPC_FAILURES:
            report.failures.append(Failure("gRPC", method, body, 0, details.encode()))

    try:
        one()
    finally:
        channel.close()
    return report
