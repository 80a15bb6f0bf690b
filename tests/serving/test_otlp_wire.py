"""The wire-format encoder writes what OpenTelemetry's own protobuf messages write: every
span decoded by opentelemetry-proto equals the same span built with its messages, for
odd values too (huge and negative integers, non-finite floats, True against 1, numpy
numbers, lists, lone surrogates, names longer than a one-byte length)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shipml.serving import otlp_wire, span_records
from shipml.serving.otlp import _plain
from shipml.serving.otlp_wire import Encoder


def _by_library(spans: list[tuple[Any, ...]], service: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name").value.string_value = service
    scope = resource.scope_spans.add()
    scope.scope.name = "shipml"
    for trace, span, parent, name, kind, start, end, attributes, error in spans:
        out = scope.spans.add(
            trace_id=trace.to_bytes(16, "big"),
            span_id=span.to_bytes(8, "big"),
            parent_span_id=parent.to_bytes(8, "big") if parent else b"",
            name=name,
            kind=kind,
            start_time_unix_nano=start,
            end_time_unix_nano=end,
        )
        for key, value in (attributes or {}).items():
            target = out.attributes.add(key=key).value
            if isinstance(value, bool):
                target.bool_value = value
            elif isinstance(value, int) and -(2**63) <= value < 2**63:
                target.int_value = value
            elif isinstance(value, float):
                target.double_value = value
            else:
                target.string_value = str(value)
        if error:
            out.status.code = 2
            out.status.message = error
    return request


SPANS: list[tuple[Any, ...]] = [
    (2**128 - 1, 2**64 - 1, 0, "POST /v2/models/{name}/infer", 2, 1, 2**64 - 1, None, ""),
    (1, 2, 3, "validate", 1, 10, 20, {"shipml.request_id": "r-1", "n": 7}, ""),
    (1, 4, 3, "é" * 300, 1, 0, 0, {"k" * 200: "v" * 70_000}, "ValueError: " + "x" * 150),
    (
        5,
        6,
        7,
        "odd",
        3,
        11,
        12,
        {
            "big": 2**70,
            "neg": -5,
            "min": -(2**63),
            "nan": math.nan,
            "inf": -math.inf,
            "t": True,
            "f": False,
            "one": 1,
            "float_one": 1.0,
            "ünï": "çödé ✓",
        },
        "",
    ),
    # the same keys again, with values equal to the remembered ones but of other types
    (5, 8, 7, "odd", 3, 11, 12, {"t": 1, "one": True, "float_one": 1, "n": 7.0}, ""),
]


def test_the_encoding_equals_opentelemetry_protos_own():
    encoder = Encoder("svc ✓")
    for _ in range(2):  # the second time from what the encoder remembered
        got = ExportTraceServiceRequest.FromString(encoder.request(SPANS))
        want = _by_library(SPANS, "svc ✓")
        # NaN is not equal to itself: compare it apart, then the rest
        got_nan = got.resource_spans[0].scope_spans[0].spans[3].attributes[3].value
        assert math.isnan(got_nan.double_value)
        assert got.SerializeToString(deterministic=True) == want.SerializeToString(
            deterministic=True
        )


def test_numpy_values_lists_and_lone_surrogates_are_sent_as_plain_values():
    from shipml.serving.spans import Span

    span = Span(None, "s\ud800", 1, 0, 1, {"i": np.int64(3), "x": np.float32(0.5)})  # type: ignore[arg-type]
    span.set_attribute("b", np.bool_(True))
    span.set_attribute("list", [1, 2])
    span.set_attribute("text", "a\udc80b")
    got = ExportTraceServiceRequest.FromString(Encoder("s").request([_plain(span.fields())]))
    out = got.resource_spans[0].scope_spans[0].spans[0]
    values = {a.key: a.value for a in out.attributes}
    assert out.name == "s\ufffd"
    assert values["i"].int_value == 3 and values["x"].double_value == 0.5
    assert values["b"].bool_value is True and values["list"].string_value == "[1, 2]"
    assert values["text"].string_value == "a\ufffdb"


def test_what_the_encoder_remembers_is_bounded(monkeypatch):
    monkeypatch.setattr(otlp_wire, "CACHED", 50)
    encoder = Encoder("s")
    spans = [(1, i + 1, 0, f"name-{i}", 1, 0, 0, {"route": f"/r/{i}"}, "") for i in range(500)]
    got = ExportTraceServiceRequest.FromString(encoder.request(spans))
    sent = got.resource_spans[0].scope_spans[0].spans
    assert [s.attributes[0].value.string_value for s in sent] == [f"/r/{i}" for i in range(500)]
    assert len(encoder._cache) <= 50


def test_long_paths_and_names_are_sent_but_not_kept():
    """A client can send requests to thousands of distinct long paths (a 404 is traced
    too): each is sent in full, none is kept, so what the exporter process remembers
    stays small whatever it is sent."""
    encoder = Encoder("s")
    long = [f"/v2/models/{i}{'x' * 4000}/infer" for i in range(3000)]
    records = [
        (
            span_records.SERVED,
            1,
            i + 1,
            0,
            0,
            1,
            "POST",
            "/v2/models/{name}/infer",
            path,
            "r",
            404,
            None,
            "",
        )
        for i, path in enumerate(long)
    ]
    records += [(1, i + 1, 0, path, 1, 0, 0, {"url.path": path}, "") for i, path in enumerate(long)]
    for _ in range(2):  # the second time too: nothing was kept to be found
        got = ExportTraceServiceRequest.FromString(encoder.request(records))
        sent = got.resource_spans[0].scope_spans[0].spans
        assert [s.attributes[2].value.string_value for s in sent[:3000]] == long
        assert [s.name for s in sent[3000:]] == long
    kept = sum(map(len, encoder._cache.values())) + sum(
        len(a) + len(b) for a, b in encoder._served.values()
    )
    assert kept < 100_000, kept


SCORED_RECORDS: list[tuple[Any, ...]] = [
    # validated, batched, run: the fixed layouts
    (span_records.SCORED, 7, 9, 100, 200, 900, (300, 800, 4), "req-1", ""),
    # the next request of the same trace id, a long request id and one with a surrogate
    (span_records.SCORED, 7, 10, 1, 2, 3, (2, 3, 2**40), "r" * 300, ""),
    (span_records.SCORED, 2**128 - 1, 2**64 - 1, 0, 2**64 - 1, 2**64 - 1, (0, 0, 1), "a\udc80", ""),
    # the others: written span by span
    (span_records.SCORED, 8, 11, 100, None, 150, None, "req-2", "InvalidRequest: bad"),
    (span_records.SCORED, 8, 12, 100, 200, 400, None, "req-3", "CancelledError: "),
    (span_records.SCORED, 8, 13, 100, 200, 400, None, "req-4", ""),
]


def _encoded_and_expanded(items: list[tuple[Any, ...]]) -> tuple[Any, list[tuple[Any, ...]]]:
    """What the encoder sends for ``items`` (decoded), and the spans the records expand
    to, with the same ids (drawn in the same order) and text as it is sent (a lone
    surrogate as U+FFFD)."""
    encoder = Encoder("svc")
    ids = iter(range(1000, 2000))
    encoder.new_ids = lambda n: b"".join(next(ids).to_bytes(8, "big") for _ in range(n))
    got = ExportTraceServiceRequest.FromString(encoder.request(items))
    again = iter(range(1000, 2000))
    spans: list[tuple[Any, ...]] = []
    for item in items:
        if item[0] == span_records.SCORED:
            spans += span_records.expand(item, again.__next__)  # type: ignore[arg-type]
        elif item[0] == span_records.SERVED:
            spans.append(span_records.expand_served(item))  # type: ignore[arg-type]
        else:
            spans.append(item)
    for i, span in enumerate(spans):
        if span[7] and "shipml.request_id" in span[7]:
            rid = span[7]["shipml.request_id"].replace("\udc80", "\ufffd")
            spans[i] = (*span[:7], {**span[7], "shipml.request_id": rid}, span[8])
    return got, spans


def test_a_scored_requests_record_is_written_as_its_spans():
    """The record's fast layouts decode to exactly the spans ``expand`` makes of it, ids
    included (drawn in the same order), mixed with ordinary spans and remembered
    attributes; and ``span_count`` counts what is written."""
    items = [*SCORED_RECORDS, SPANS[0], *SCORED_RECORDS]
    got, spans = _encoded_and_expanded(items)
    want = _by_library(spans, "svc")
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
    names = [s.name for s in got.resource_spans[0].scope_spans[0].spans]
    assert names[:3] == ["validate", "batch", "model"] and names.count("validate") == 12
    assert span_records.span_count(items) == len(spans) == 2 * (3 + 3 + 3 + 1 + 2 + 2) + 1


V2, PREDICT = "/v2/models/{name}/infer", "/predict"
TOP = 2**64 - 1


def _served(trace, span, parent, times, method, route, path, rid, status, extra=None, error=""):
    return (
        span_records.SERVED,
        trace,
        span,
        parent,
        *times,
        method,
        route,
        path,
        rid,
        status,
        extra,
        error,
    )


SERVED_RECORDS: list[tuple[Any, ...]] = [
    # the usual request span: its remembered name and attributes (the second time)
    _served(7, 9, 0, (100, 900), "POST", V2, "/v2/x", "r-1", 200),
    _served(7, 10, 3, (1, 2), "POST", V2, "/v2/x", "r" * 300, 503),
    _served(2**128 - 1, TOP, TOP, (0, TOP), "POST", PREDICT, PREDICT, "a\udc80", 200),
    # the others: written as the span they expand to
    _served(8, 11, 0, (1, 2), "POST", PREDICT, PREDICT, "r-2", None, error="ValueError: x"),
    _served(8, 12, 0, (1, 2), "POST", PREDICT, PREDICT, "r-3", 200, {"n": 7, "t": True}),
    _served(8, 13, 0, (1, 2), "GET", "/é" * 80, "/p", "r-4", None),
]


def test_a_request_spans_record_is_written_as_the_span_it_expands_to():
    """Fast layout or not, a request span's record decodes to exactly ``expand_served``'s
    span: among other records, sharing remembered attributes (status codes, the request
    id of the request's scored record before it)."""
    scored = (span_records.SCORED, 7, 9, 100, 200, 900, (300, 800, 4), "r-1", "")
    items = [*SERVED_RECORDS, scored, *SERVED_RECORDS, SPANS[1], *SERVED_RECORDS]
    got, spans = _encoded_and_expanded(items)
    want = _by_library(spans, "svc")
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
    sent = got.resource_spans[0].scope_spans[0].spans
    assert sent[0].name == "POST /v2/models/{name}/infer" and sent[0].kind == 2
    assert [a.key for a in sent[0].attributes] == [
        "http.request.method",
        "http.route",
        "url.path",
        "shipml.request_id",
        "http.response.status_code",
    ]
    assert span_records.span_count(items) == len(spans) == 3 * 6 + 3 + 1
