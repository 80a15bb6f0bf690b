"""Prometheus metrics of the model server, low cardinality (no ids in labels).

Children of labelled metrics are resolved once and cached, so the per-request cost
is a few increments."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("shipml.serving")
disable_created_metrics()  # no *_created series: they double the exposition for nothing

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str, version: str, onnx_sha256: str) -> None:
        self.model, self.version = model, version
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "shipml_requests",
            "Requests answered, by protocol and HTTP status code.",
            ["model", "version", "protocol", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "shipml_request_duration_seconds",
            "Time from request to response.",
            ["model", "version", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "shipml_batch_size_rows",
            "Rows per onnxruntime call (micro-batching).",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        ).labels(model, version)
        # A plain counter read at scrape time: no lock on the request path.
        self.in_flight = 0
        Gauge("shipml_requests_in_flight", "Requests being handled now.", registry=r).set_function(
            lambda: self.in_flight
        )
        info = Gauge(
            "shipml_model_info",
            "The model being served.",
            ["model", "version", "onnx_sha256"],
            registry=r,
        )
        info.labels(model, version, onnx_sha256).set(1)
        self.predicted = Counter(
            "shipml_predictions",
            "Predicted rows by class.",
            ["model", "version", "class"],
            registry=r,
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def observe(self, protocol: str, code: int, seconds: float) -> None:
        key = (protocol, str(code))
        child = self._children.get(key)
        if child is None:
            child = (
                self.requests.labels(self.model, self.version, protocol, str(code)),
                self.latency.labels(self.model, self.version, protocol),
            )
            self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def count_classes(self, labels: np.ndarray) -> None:
        if len(labels) == 1:
            self._predicted(labels[0]).inc()
            return
        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self._predicted(value).inc(count)

    def _predicted(self, value: Any) -> Any:
        key = ("class", str(value))
        child = self._children.get(key)
        if child is None:
            child = self.predicted.labels(self.model, self.version, str(value))
            self._children[key] = child
        return child

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
