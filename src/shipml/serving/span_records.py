"""What the request path hands the span exporter: finished spans as plain values, and
the records a model server's request makes instead of spans (its ``scored`` spans, its
request span), which the exporter process expands (``as_spans``) or writes out from
fixed layouts (``shipml.serving.otlp_wire``)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

_ZERO = bytes(8)

# A finished span as plain values (``shipml.serving.spans.fields_of``): trace id, span
# id, parent span id (0: none), name, kind, start and end (ns), attributes, error text.
Finished = tuple[int, int, int, str, int, int, int, "dict[str, Any] | None", str]
# A scored request's ``validate``, ``batch`` and ``model`` spans in one record
# (``Tracing.scored``): SCORED, trace id, parent span id, when validation began, ended
# (None: it failed), when the batch ended, the model run (start, end, rows) or None, the
# request id, the error text of the span that failed. Its spans' ids are drawn where it
# is encoded: nothing refers to them but each other.
Scored = tuple[str, int, int, int, "int | None", int, "tuple[int, int, int] | None", str, str]
SCORED = "scored"
# A model server's request span (``Tracing.request_span``) in one record: SERVED, trace
# id, span id, parent span id (0: none), start, end, the method, route, path and request
# id it is named and described by, the response's status code (None: not set), any other
# attributes (None: none), the error text. Its name and attribute dict are made where it
# is encoded.
Served = tuple[
    str, int, int, int, int, int, str, str, str, str, "int | None", "dict[str, Any] | None", str
]
SERVED = "served"
RID = "shipml.request_id"
INTERNAL, SERVER = 1, 2  # OTLP's SpanKind
STATUS = "http.response.status_code"


def expand(record: Scored, new_id: Callable[[], int]) -> list[Finished]:
    """A scored request's record as its spans (``new_id`` draws their ids)."""
    _, trace, parent, begun, parsed, ended, timing, request_id, error = record
    if parsed is None:
        return [(trace, new_id(), parent, "validate", INTERNAL, begun, ended, None, error)]
    batch = new_id()
    spans: list[Finished] = [
        (trace, new_id(), parent, "validate", INTERNAL, begun, parsed, None, ""),
        (trace, batch, parent, "batch", INTERNAL, parsed, ended, {RID: request_id}, error),
    ]
    if timing is not None:
        start, end, rows = timing
        rows_attribute = {"shipml.batch.rows": rows}
        spans.append((trace, new_id(), batch, "model", INTERNAL, start, end, rows_attribute, ""))
    return spans


def expand_served(record: Served) -> Finished:
    """A request span's record as the span it is."""
    _, trace, span_id, parent, start, end, method, route, path, rid, status, extra, error = record
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "http.route": route,
        "url.path": path,
        RID: rid,
    }
    if extra:
        attributes.update(extra)
    if status is not None:
        attributes[STATUS] = status
    return (trace, span_id, parent, f"{method} {route}", SERVER, start, end, attributes, error)


Record = Finished | Scored | Served  # what the exporter process is handed


def as_spans(items: Iterable[Record]) -> list[Finished]:
    """Spans, each record as its spans (the console prints these)."""
    new_id = Ids().one
    out: list[Finished] = []
    for item in items:
        if item[0] == SCORED:
            out += expand(item, new_id)  # type: ignore[arg-type]
        elif item[0] == SERVED:
            out.append(expand_served(item))  # type: ignore[arg-type]
        else:
            out.append(item)  # type: ignore[arg-type]
    return out


def span_count(items: Iterable[Record]) -> int:
    """How many spans ``items`` hold (a scored request's record holds one to three)."""
    count = 0
    for item in items:
        if item[0] == SCORED:
            count += 1 if item[4] is None else 2 if item[6] is None else 3
        else:
            count += 1
    return count


class Ids:
    """Span ids: random (unique, not secret) and never zero (an invalid id)."""

    def __init__(self) -> None:
        self._bits = random.Random().getrandbits

    def draw(self, n: int) -> bytes:
        """``n`` ids, eight bytes each (a run of zero bytes across two of them only costs
        another draw)."""
        while True:
            data = self._bits(64 * n).to_bytes(8 * n, "big")
            if _ZERO not in data:
                return data

    def one(self) -> int:
        return int.from_bytes(self.draw(1), "big")
