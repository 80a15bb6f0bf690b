"""Prometheus metrics of the model server, low cardinality (no ids in labels).

The per-request series (requests by protocol and code, the latency and batch-size
histograms, predictions by class) are plain Python numbers, updated on the event loop
with a dict lookup and an increment (no lock, no bucket walk in Python), and turned into
Prometheus metric families only when ``/metrics`` is scraped (a custom collector, as
prometheus_client documents for values kept elsewhere). The exposition is that of
prometheus_client's own Counter and Histogram."""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

log = logging.getLogger("shipml.serving")
disable_created_metrics()  # no *_created series: they double the exposition for nothing

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Tally:
    """One histogram series: a count per bucket (the last one: above every bound) and the
    sum. ``observe`` is a binary search in C and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative buckets as the exposition writes them (``le`` and count)."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((floatToGoString(bound), float(total)))
        return out


class CountedBy(Collector):
    """One counter whose value is kept elsewhere and read at scrape time (``count()``):
    exposed as ``name_total`` so that ``rate()`` and ``increase()`` work on it."""

    def __init__(
        self, name: str, doc: str, labels: dict[str, str], count: Callable[[], int]
    ) -> None:
        self.name, self.doc, self.labels, self.count = name, doc, labels, count

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=list(self.labels))
        family.add_metric(list(self.labels.values()), self.count())
        yield family


class Series(Collector):
    """The per-request series of one model, read at scrape time."""

    def __init__(self, model: str, version: str) -> None:
        self.model, self.version = model, version
        self.requests: dict[tuple[str, int], int] = {}  # (protocol, code) -> answered
        self.latency: dict[str, Tally] = {}  # protocol -> seconds
        self.batch = Tally(BATCH_BUCKETS)
        self.predicted: dict[str, int] = {}  # class -> predicted rows

    def collect(self) -> Iterator[Metric]:
        m, v = self.model, self.version
        requests = CounterMetricFamily(
            "shipml_requests",
            "Requests answered, by protocol and HTTP status code.",
            labels=["model", "version", "protocol", "code"],
        )
        for (protocol, code), count in list(self.requests.items()):
            requests.add_metric([m, v, protocol, str(code)], count)
        yield requests
        latency = HistogramMetricFamily(
            "shipml_request_duration_seconds",
            "Time from request to response.",
            labels=["model", "version", "protocol"],
        )
        for protocol, tally in list(self.latency.items()):
            latency.add_metric([m, v, protocol], tally.buckets(), tally.sum)
        yield latency
        batch = HistogramMetricFamily(
            "shipml_batch_size_rows",
            "Rows per onnxruntime call (micro-batching).",
            labels=["model", "version"],
        )
        batch.add_metric([m, v], self.batch.buckets(), self.batch.sum)
        yield batch
        predicted = CounterMetricFamily(
            "shipml_predictions", "Predicted rows by class.", labels=["model", "version", "class"]
        )
        for value, count in list(self.predicted.items()):
            predicted.add_metric([m, v, value], count)
        yield predicted


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str, version: str, onnx_sha256: str) -> None:
        self.model, self.version = model, version
        self.registry = CollectorRegistry()
        r = self.registry
        self.series = Series(model, version)
        r.register(self.series)
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
        self._requests = self.series.requests
        self._latency = self.series.latency
        self._predicted = self.series.predicted
        self.observe_batch = self.series.batch.observe  # rows per model run

    def observe(self, protocol: str, code: int, seconds: float) -> None:
        """One answered request (on the event loop)."""
        key = (protocol, code)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        tally = self._latency.get(protocol)
        if tally is None:
            tally = self._latency[protocol] = Tally(LATENCY_BUCKETS)
        tally.observe(seconds)

    def count_classes(self, labels: np.ndarray) -> None:
        predicted = self._predicted
        if len(labels) == 1:
            key = str(labels[0])
            predicted[key] = predicted.get(key, 0) + 1
            return
        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            key = str(value)
            predicted[key] = predicted.get(key, 0) + count

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
