"""Finished spans as OTLP's protobuf bytes (``ExportTraceServiceRequest``), written
directly in protobuf's wire format.

Why not OpenTelemetry's own messages (``opentelemetry-proto``, which the tests use to
decode what is sent, field by field): building a ``Span`` message from Python costs
about 2.2 µs a span, four spans a request, where the whole request takes about 80 µs of
CPU on the server. Written here, with the bytes of what repeats (span names, attribute
keys, the attributes that take few values: method, route, status code, batch rows)
kept, a traced request's four spans cost about 4 µs, in the server's exporter process
(``otlp_sender``): a scored request's ``validate``, ``batch`` and ``model`` come as one
record (``span_records.Scored``), its request span as another (``Served``), and both
are written from fixed layouts.

The layout (opentelemetry/proto/trace/v1/trace.proto): an ExportTraceServiceRequest
holds one ResourceSpans (the ``service.name`` resource), which holds one ScopeSpans
(scope ``shipml``), which holds the spans: trace id (1), span id (2), parent span id
(4), name (5), kind (6), start and end (7, 8: fixed64), attributes (9: KeyValue with an
AnyValue), status (15: message 2, code 3 = ERROR) when the span failed.
"""

from __future__ import annotations

import numbers
import struct
from collections.abc import Callable, Iterable
from typing import Any

from shipml.serving.span_records import (
    SCORED,
    SERVED,
    SERVER,
    STATUS,
    Finished,
    Ids,
    Record,
    Scored,
    Served,
    expand,
    expand_served,
)

_TIMES = struct.Struct("<BBBQBQ")  # kind (varint < 128), start, end (fixed64)
_DOUBLE = struct.Struct("<d")
# A scored request's usual spans in one ``struct`` each, in field-number order: trace id,
# span id, parent span id (the ``8s`` values, big-endian bytes), the name and kind (in
# the constant after them), start and end (``Q``: fixed64). The constants are values of
# the format (``s``); ``validate`` has a fixed size, so its ``spans`` tag and length too.
_SPAN = "<{}s16s2s8s2s8s{}sBQBQ"
_VALIDATE = struct.Struct(_SPAN.format(4, 12))
_CHILD = struct.Struct(_SPAN.format(2, 9))  # batch and model: names of five letters
_HEAD = b"\x0a\x10"
_VALIDATE_HEAD = bytes((0x12, _VALIDATE.size - 2)) + _HEAD
_ID, _PARENT = b"\x12\x08", b"\x22\x08"
_RID_KEY = bytes((0x0A, 17)) + b"shipml.request_id"
_NAMES = {n: bytes((0x2A, len(n))) + n + b"\x30\x01" for n in (b"validate", b"batch", b"model")}
_UINT64 = 0xFFFFFFFFFFFFFFFF
CACHED = 4096  # encoded names and attributes kept at most (a bound, not a tuning)
KEPT_BYTES = 512  # longer ones are not kept: they rarely repeat (a request's own path)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, data: bytes) -> bytes:
    """A length-delimited field: its tag byte (field numbers below 16), length, data."""
    size = len(data)
    return (bytes((tag, size)) if size < 0x80 else bytes((tag,)) + _varint(size)) + data


def _text(value: str) -> bytes:
    """UTF-8, as protobuf strings must be (a lone surrogate becomes U+FFFD)."""
    try:
        return value.encode()
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 else c for c in value).encode()


def _any_value(value: Any) -> bytes:
    """An AnyValue: exactly str, bool, int, float; numpy numbers as Python's; the rest as
    their text."""
    kind = type(value)
    if kind is not str and kind is not bool and kind is not int and kind is not float:
        if kind.__name__ in ("bool_", "bool"):  # numpy's bool
            value = bool(value)
        elif isinstance(value, numbers.Integral):
            value = int(value)
        elif isinstance(value, numbers.Real):
            value = float(value)
        else:
            value = str(value)
        kind = type(value)
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if -(2**63) <= value < 2**63:
            return b"\x18" + _varint(value & _UINT64)  # int64, two's complement
        return _field(0x0A, str(value).encode())  # beyond int64: its digits
    if kind is float:
        return b"\x21" + _DOUBLE.pack(value)
    return _field(0x0A, _text(value))


def _key_value(key: str, value: Any) -> bytes:
    return _field(0x4A, _field(0x0A, _text(str(key))) + _field(0x12, _any_value(value)))


def _wrap(body: bytes) -> bytes:
    """A span's body as a ScopeSpans ``spans`` field."""
    size = len(body)
    return (bytes((0x12, size)) if size < 0x80 else b"\x12" + _varint(size)) + body


class Encoder:
    """Encodes batches of finished spans of one service; remembers the bytes of names and
    attributes that repeat (not thread-safe: one exporter thread uses it)."""

    def __init__(self, service: str) -> None:
        resource = _field(0x0A, b"service.name") + _field(0x12, _field(0x0A, _text(service)))
        self._resource = _field(0x0A, _field(0x0A, resource))
        self._scope = _field(0x0A, _field(0x0A, b"shipml"))
        self._cache: dict[Any, bytes] = {}
        self._served: dict[tuple[str, str, str], tuple[bytes, bytes]] = {}
        self._types: dict[Any, type] = {}
        self._trace, self._trace_bytes = -1, b""  # the last span's trace id, encoded
        self._last: tuple[tuple[str, Any], bytes] = (("", None), b"")  # its last attribute
        self._unique: frozenset[str] = frozenset({"shipml.request_id"})
        self.new_ids: Callable[[int], bytes] = Ids().draw

    def request(self, spans: Iterable[Record]) -> bytes:
        """One ExportTraceServiceRequest with every span (and every record's spans)."""
        scored, served, span = self.scored, self.served, self.span
        parts = [
            scored(s) if s[0] == SCORED else served(s) if s[0] == SERVED else span(s)  # type: ignore[arg-type]
            for s in spans
        ]
        # One join, the lengths first: each copy of a batch of some 300 kB (and the
        # memory the allocator maps and unmaps for it) cost the process more than the
        # spans' own bytes did.
        scope_size = len(self._scope) + sum(map(len, parts))
        scope_head = b"\x12" + _varint(scope_size)
        size = len(self._resource) + len(scope_head) + scope_size
        head = b"\x0a" + _varint(size) + self._resource + scope_head + self._scope
        parts.insert(0, head)
        return b"".join(parts)

    def served(self, record: Served) -> bytes:
        """A request span: the usual one (method, route, path, request id, an integer
        status, nothing else) from its remembered name and attributes; others as spans."""
        _, trace, span_id, parent, start, end, method, route, path, rid, status, extra, error = (
            record
        )
        fixed = self._served.get((method, route, path))
        if extra or error or type(status) is not int or type(rid) is not str or fixed is None:
            if not (extra or error) and str is type(method) is type(route) is type(path):
                self._remember_served(method, route, path)
            return self.span(expand_served(record))
        if trace != self._trace:
            self._trace, self._trace_bytes = trace, b"\x0a\x10" + trace.to_bytes(16, "big")
        item = (STATUS, status)
        code = self._cache.get(item)
        if code is None or self._types[item] is not int:
            code = self._attribute(item)
        name, attributes = fixed
        return _wrap(
            b"".join(
                (
                    self._trace_bytes,
                    _ID,
                    span_id.to_bytes(8, "big"),
                    _PARENT + parent.to_bytes(8, "big") if parent else b"",
                    name,
                    _TIMES.pack(0x30, SERVER, 0x39, start, 0x41, end),
                    attributes,
                    self._request_id(rid),
                    code,
                )
            )
        )

    def _remember_served(self, method: str, route: str, path: str) -> None:
        """The name and first three attributes of requests to this method and path."""
        name = _field(0x2A, _text(f"{method} {route}"))
        attributes = (
            _key_value("http.request.method", method)
            + _key_value("http.route", route)
            + _key_value("url.path", path)
        )
        if len(self._served) < CACHED and len(name) + len(attributes) < KEPT_BYTES:
            self._served[(method, route, path)] = (name, attributes)

    def span(self, span: Finished) -> bytes:
        """One span, as a ScopeSpans ``spans`` field."""
        cache = self._cache
        trace, span_id, parent, name, kind, start, end, attributes, error = span
        if trace != self._trace:  # a request's spans are queued together: one trace
            self._trace, self._trace_bytes = trace, b"\x0a\x10" + trace.to_bytes(16, "big")
        body = b"".join(
            (
                self._trace_bytes,
                b"\x12\x08",
                span_id.to_bytes(8, "big"),
                b"\x22\x08" + parent.to_bytes(8, "big") if parent else b"",
                cache.get(name) or self._name(name),
                _TIMES.pack(0x30, kind, 0x39, start, 0x41, end),
            )
        )
        if attributes:
            for item in attributes.items():
                try:
                    encoded = cache.get(item)
                except TypeError:  # an unhashable value (a list...): sent as its text
                    encoded = None
                # True, 1 and 1.0 are equal keys but not equal values: the type is kept
                if encoded is None or type(item[1]) is not self._types[item]:
                    encoded = self._attribute(item)
                body += encoded
        if error:
            body += _field(0x7A, _field(0x12, _text(error)) + b"\x18\x02")
        return _wrap(body)

    def scored(self, record: Scored) -> bytes:
        """A scored request's spans: the usual record (validated, batched, run) written
        from fixed layouts with one ``struct`` call per span; the others as spans."""
        _, trace, parent, begun, parsed, ended, timing, request_id, error = record
        if parsed is None or timing is None or error or type(request_id) is not str:
            return b"".join([self.span(s) for s in expand(record, self._new_id)])
        if trace != self._trace:
            self._trace, self._trace_bytes = trace, b"\x0a\x10" + trace.to_bytes(16, "big")
        trace_bytes, parent_bytes = self._trace_bytes[2:], parent.to_bytes(8, "big")
        ids = self.new_ids(3)  # batch, validate, model: the order ``expand`` draws them in
        batch = ids[:8]
        rows = ("shipml.batch.rows", timing[2])
        rows_bytes = self._cache.get(rows)
        if rows_bytes is None or type(rows[1]) is not self._types[rows]:
            rows_bytes = self._attribute(rows)
        names = _NAMES
        validate = _VALIDATE.pack(
            _VALIDATE_HEAD,
            trace_bytes,
            _ID,
            ids[8:16],
            _PARENT,
            parent_bytes,
            names[b"validate"],
            0x39,
            begun,
            0x41,
            parsed,
        )
        batch_body = _CHILD.pack(
            _HEAD,
            trace_bytes,
            _ID,
            batch,
            _PARENT,
            parent_bytes,
            names[b"batch"],
            0x39,
            parsed,
            0x41,
            ended,
        )
        model_body = _CHILD.pack(
            _HEAD,
            trace_bytes,
            _ID,
            ids[16:],
            _PARENT,
            batch,
            names[b"model"],
            0x39,
            timing[0],
            0x41,
            timing[1],
        )
        rid = self._request_id(request_id)
        return b"".join((validate, _wrap(batch_body + rid), _wrap(model_body + rows_bytes)))

    def _request_id(self, request_id: str) -> bytes:
        """The request id attribute, new each request: written directly when short, and
        remembered as the last attribute (the request's own span has it too)."""
        item = ("shipml.request_id", request_id)
        if item == self._last[0]:
            return self._last[1]
        try:
            value = request_id.encode()
        except UnicodeEncodeError:
            value = b""
        size = len(value)
        if 0 < size < 100:  # every length below fits one byte
            inner = _RID_KEY + bytes((0x12, size + 2, 0x0A, size)) + value
            encoded = bytes((0x4A, len(inner))) + inner
        else:
            encoded = _key_value(*item)
        self._last = (item, encoded)
        return encoded

    def _new_id(self) -> int:
        return int.from_bytes(self.new_ids(1), "big")

    def _name(self, name: str) -> bytes:
        return self._remember(name, _field(0x2A, _text(name)))

    def _attribute(self, item: tuple[str, Any]) -> bytes:
        if item == self._last[0] and type(item[1]) is type(self._last[0][1]):
            return self._last[1]  # the request id again (the request's and batch's span)
        encoded = _key_value(*item)
        self._last = (item, encoded)
        if item[0] not in self._unique and len(self._cache) < CACHED and len(encoded) < KEPT_BYTES:
            try:
                self._cache[item] = encoded
                self._types[item] = type(item[1])
            except TypeError:  # unhashable
                pass
        return encoded

    def _remember(self, key: Any, encoded: bytes) -> bytes:
        if len(self._cache) < CACHED and len(encoded) < KEPT_BYTES:
            self._cache[key] = encoded
        return encoded
