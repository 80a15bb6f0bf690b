"""The gateway's Prometheus metrics, written by prometheus-client.

The request path only bumps plain counters (a dict per variant and status code); this
collector reads them at scrape time, so forwarding a request costs no metric lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from shipml.rollout.traffic import Traffic

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()


class GatewayCollector(Collector):
    """Reads, at scrape time, the counters the gateway keeps."""

    def __init__(
        self,
        traffic: Traffic,
        requests: dict[tuple[str, int], int],
        shadow: dict[str, int],
        feedback: dict[str, int],
    ) -> None:
        self.traffic = traffic
        self.requests = requests
        self.shadow = shadow
        self.feedback = feedback

    def collect(self) -> Iterator[Any]:
        traffic = self.traffic
        requests = CounterMetricFamily(
            "shipml_gateway_requests",
            "Requests answered, by variant and HTTP status code.",
            labels=["variant", "code"],
        )
        for (variant, code), n in sorted(self.requests.items()):
            requests.add_metric([variant, str(code)], n)
        yield requests
        shadow = CounterMetricFamily(
            "shipml_gateway_shadow", "Mirrored requests, by outcome.", labels=["outcome"]
        )
        for outcome, n in sorted(self.shadow.items()):
            shadow.add_metric([outcome], n)
        yield shadow
        feedback = CounterMetricFamily(
            "shipml_gateway_feedback_labels",
            "Labels received, by outcome (matched, unknown, already labelled, expired).",
            labels=["outcome"],
        )
        for outcome, n in sorted(self.feedback.items()):
            feedback.add_metric([outcome], n)
        yield feedback
        weight = GaugeMetricFamily(
            "shipml_gateway_weight", "Share of traffic per variant (%).", labels=["variant"]
        )
        for variant, w in traffic.weights():
            weight.add_metric([variant], w)
        yield weight
        if traffic.policy.mode == "canary" or traffic.step:
            yield GaugeMetricFamily(
                "shipml_gateway_canary_step", "The canary's step (0 is the first).", traffic.step
            )
        yield GaugeMetricFamily(
            "shipml_gateway_canary_held",
            "1 while a canary holds at its step (the challenger's offline gates do not "
            "hold; GET /v1/rollout says why).",
            1.0 if traffic.held else 0.0,
        )


def registry_for(collector: GatewayCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return bytes(generate_latest(registry))
