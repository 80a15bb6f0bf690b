"""Prometheus alert rules for shipml's metrics, as data.

One rule group watches every model server and the gateway: features drifting, the
predictions drifting, quality falling below the hold-out's, server errors, slow
predictions, no traffic, a server down, gateway errors. ``shipml deploy render`` writes
it as a plain rules file (for any Prometheus) and as a PrometheusRule (the Prometheus
Operator); the tests run each alert through ``promtool test rules``, and a real
Prometheus fires the drift alert from a running ``shipml serve``.

Every expression aggregates ``by (model, version)`` (or per feature), so one alert
names the model version it is about; ``{{ $labels.* }}`` fill the summaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

QUALITY_METRICS = ("accuracy", "f1_macro")
ERROR_METRICS = ("mae", "rmse")


@dataclass(frozen=True)
class Timing:
    """How long a condition must hold before its alert fires, and the rate window."""

    drift: str = "15m"
    quality: str = "30m"
    errors: str = "10m"
    latency: str = "10m"
    no_traffic: str = "15m"
    down: str = "5m"
    rate: str = "5m"
    idle: str = "15m"  # the window in which no request means "no traffic"


@dataclass(frozen=True)
class Thresholds:
    max_quality_drop: float = 0.05  # [monitor] max_quality_drop
    min_labels: int = 30  # [monitor] min_labels
    max_error_rate: float = 0.02
    max_p99_s: float = 0.25


def _rule(
    alert: str, expr: str, wait: str, severity: str, summary: str, **extra: str
) -> dict[str, Any]:
    annotations = {"summary": summary, **extra}
    return {
        "alert": alert,
        "expr": expr,
        "for": wait,
        "labels": {"severity": severity},
        "annotations": annotations,
    }


def rules(
    selector: str = "", *, timing: Timing | None = None, thresholds: Thresholds | None = None
) -> list[dict[str, Any]]:
    """Every alert rule; ``selector`` (e.g. ``service=~"penguins-.*"``) narrows the series
    to one project's."""
    t, th = timing or Timing(), thresholds or Thresholds()
    sel = f"{{{selector}}}" if selector else ""
    inner = f"{selector}," if selector else ""
    return _model_rules(t, th, sel, inner) + _service_rules(t, th, sel, inner)


def _model_rules(t: Timing, th: Thresholds, sel: str, inner: str) -> list[dict[str, Any]]:
    """Drift of the inputs and predictions, and quality from feedback."""
    drop, labels = th.max_quality_drop, th.min_labels
    quality = " or ".join(
        [
            f'(shipml_quality{{{inner}metric="{m}"}} < on (model, version, metric) '
            f'(shipml_quality_holdout{{{inner}metric="{m}"}} - {drop:g}))'
            for m in QUALITY_METRICS
        ]
        + [
            f'(shipml_quality{{{inner}metric="{m}"}} > on (model, version, metric) '
            f'(shipml_quality_holdout{{{inner}metric="{m}"}} * {1 + drop:g}))'
            for m in ERROR_METRICS
        ]
    )
    return [
        _rule(
            "ShipmlFeatureDrift",
            f"max by (model, version, feature) (shipml_feature_drift_detected{sel}) == 1",
            t.drift,
            "warning",
            "{{ $labels.model }} {{ $labels.version }}: feature {{ $labels.feature }} drifts "
            "from the reference",
            runbook="shipml monitor {{ $labels.model }}/{{ $labels.version }} (docs/monitoring.md)",
        ),
        _rule(
            "ShipmlPredictionDrift",
            f"max by (model, version) (shipml_prediction_drift_detected{sel}) == 1",
            t.drift,
            "warning",
            "{{ $labels.model }} {{ $labels.version }}: its predictions drift from the hold-out's",
        ),
        _rule(
            "ShipmlQualityDrop",
            f"({quality}) and on (model, version) (shipml_quality_labelled{sel} >= {labels})",
            t.quality,
            "critical",
            "{{ $labels.model }} {{ $labels.version }}: {{ $labels.metric }} "
            '{{ $value | printf "%.3f" }} from feedback is below the hold-out\'s',
        ),
    ]


def _service_rules(t: Timing, th: Thresholds, sel: str, inner: str) -> list[dict[str, Any]]:
    """Errors, latency, traffic and reachability of the servers and the gateway."""
    return [
        _rule(
            "ShipmlErrorRate",
            "sum by (model, version) "
            f'(rate(shipml_requests_total{{{inner}code=~"5.."}}[{t.rate}])) '
            f"/ sum by (model, version) (rate(shipml_requests_total{sel}[{t.rate}])) "
            f"> {th.max_error_rate:g}",
            t.errors,
            "critical",
            "{{ $labels.model }} {{ $labels.version }}: more than "
            f"{th.max_error_rate:.0%} of requests fail",
        ),
        _rule(
            "ShipmlSlowPredictions",
            "histogram_quantile(0.99, sum by (le, model, version) "
            f"(rate(shipml_request_duration_seconds_bucket{sel}[{t.rate}]))) > {th.max_p99_s:g}",
            t.latency,
            "warning",
            "{{ $labels.model }} {{ $labels.version }}: p99 latency above "
            f"{th.max_p99_s * 1000:g} ms",
        ),
        _rule(
            "ShipmlNoTraffic",
            f"max by (model, version) (shipml_model_info{sel}) unless on (model, version) "
            f"(sum by (model, version) (increase(shipml_requests_total{sel}[{t.idle}])) > 0)",
            t.no_traffic,
            "warning",
            "{{ $labels.model }} {{ $labels.version }} answered no request for " + t.idle,
        ),
        _rule(
            "ShipmlModelServerDown",
            f"up{sel} == 0",
            t.down,
            "critical",
            "{{ $labels.instance }} does not answer scrapes",
        ),
        _rule(
            "ShipmlGatewayErrors",
            f'sum(rate(shipml_gateway_requests_total{{{inner}code=~"5.."}}[{t.rate}])) '
            f"/ sum(rate(shipml_gateway_requests_total{sel}[{t.rate}])) > {th.max_error_rate:g}",
            t.errors,
            "warning",
            f"the gateway answers more than {th.max_error_rate:.0%} errors",
        ),
    ]


def group(name: str, selector: str = "", **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "rules": rules(selector, **kwargs)}


def rules_file(name: str, selector: str = "", **kwargs: Any) -> str:
    """A Prometheus rules file (``rule_files:``), as YAML."""
    return yaml.safe_dump({"groups": [group(name, selector, **kwargs)]}, sort_keys=False)


def thresholds_of(monitor: Any) -> Thresholds:
    """Thresholds from a ``MonitorSection``."""
    return Thresholds(max_quality_drop=monitor.max_quality_drop, min_labels=monitor.min_labels)
