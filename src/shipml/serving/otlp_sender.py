"""The span exporter process (``shipml.serving.otlp.Exporter`` starts this file as a
script, one per server process): frames of marshalled spans on its input, each batch
encoded as one ``ExportTraceServiceRequest`` (``otlp_wire``) and POSTed to the collector,
retrying a refused or throttled export a few times with backoff. It ends at the end of
its input, that is when the server does."""

from __future__ import annotations

import http.client
import json
import logging
import marshal
import os
import struct
import sys
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from shipml.serving.otlp_wire import Encoder
from shipml.serving.span_records import Record, span_count

log = logging.getLogger("shipml.serving")
RETRIED = frozenset({429, 502, 503, 504})
FRAME = struct.Struct(">I")  # a frame's length, before it


def export_headers() -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_(TRACES_)HEADERS: ``key=value,key2=value2`` (URL-encoded)."""
    text = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or os.environ.get(
        "OTEL_EXPORTER_OTLP_HEADERS", ""
    )
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[unquote(key.strip())] = unquote(value.strip())
    return out


class Sender:
    """The exporter process's side: encode and POST, with retries."""

    def __init__(self, endpoint: str, service: str, timeout_s: float = 5.0) -> None:
        self.endpoint, self.service, self.timeout_s = endpoint, service, timeout_s
        self.headers = {"Content-Type": "application/x-protobuf", **export_headers()}
        self.sent = self.failed = 0
        self.encoder = Encoder(service)
        self._connection: http.client.HTTPConnection | None = None

    def send(self, spans: list[Record]) -> None:
        count = span_count(spans)
        try:
            self._post(self.encoder.request(spans))
            self.sent += count
        except Exception as exc:  # the collector is down: count, log, go on
            self.failed += count
            log.warning("could not export %d spans: %s", count, str(exc)[:200])

    def _post(self, body: bytes) -> None:
        url = urlsplit(self.endpoint)
        path = url.path or "/v1/traces"
        for attempt in range(4):
            try:
                connection = self._connect(url)
                connection.request("POST", path, body=body, headers=self.headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                self._connection = None
                error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status < 300:
                    return
                error = f"HTTP {response.status} from {self.endpoint}"
                if response.status not in RETRIED:
                    raise RuntimeError(error)
            if attempt < 3:
                time.sleep(0.25 * 2**attempt)
        raise RuntimeError(error)

    def _connect(self, url: Any) -> http.client.HTTPConnection:
        if self._connection is None:
            secure = url.scheme == "https"
            kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
            self._connection = kind(url.hostname or "localhost", url.port, timeout=self.timeout_s)
        return self._connection


def main() -> None:
    """The exporter process: frames of spans on stdin (a length, then a marshalled list
    of span tuples; an empty list's place, None, asks for a flush, answered on stdout
    with the counts), until the end of its input."""
    logging.basicConfig(level=logging.WARNING, format="shipml-spans: %(message)s")
    endpoint, service = sys.argv[1], sys.argv[2]
    sender = Sender(endpoint, service)
    source, answer = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = source.read(FRAME.size)
        if len(head) < FRAME.size:
            return
        (size,) = FRAME.unpack(head)
        data = source.read(size)
        if len(data) < size:
            return
        chunks = marshal.loads(data)  # from the server that started us
        if chunks is None:
            answer.write(json.dumps({"sent": sender.sent, "failed": sender.failed}).encode())
            answer.write(b"\n")
            answer.flush()
        else:
            sender.send([span for chunk in chunks for span in marshal.loads(chunk)])


if __name__ == "__main__":
    main()
