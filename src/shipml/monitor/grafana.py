"""A Grafana dashboard for shipml's metrics, as data.

Per model version: traffic, latency percentiles, errors, drift per feature, the share of
drifted features, prediction drift, quality from feedback against the hold-out's, and
the gateway's rollout weights. ``$datasource``, ``$model`` and ``$version`` are template
variables, so one dashboard serves every project and version. ``shipml deploy render``
writes it as a file to import and as a ConfigMap that Grafana's sidecar loads (label
``grafana_dashboard``).
"""

from __future__ import annotations

import json
from typing import Any

UID = "shipml-models"
SCHEMA_VERSION = 39
SEL = 'model=~"$model", version=~"$version"'


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
    }


def _panel(
    pid: int,
    title: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    x: int = 0,
    y: int = 0,
    w: int = 12,
    h: int = 8,
    description: str = "",
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [_target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(targets)],
    }


def _variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
        "sort": 1,
    }


PANELS: list[tuple[str, list[tuple[str, str]], str, str]] = [
    (
        "Traffic (requests/s)",
        [
            (
                f"sum by (model, version) (rate(shipml_requests_total{{{SEL}}}[$__rate_interval]))",
                "{{model}} {{version}}",
            )
        ],
        "reqps",
        "Answered requests per model version.",
    ),
    (
        "Latency percentiles",
        [
            (
                f"histogram_quantile({q}, sum by (le, model, version) "
                f"(rate(shipml_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                f"p{round(q * 100)} {{{{version}}}}",
            )
            for q in (0.5, 0.95, 0.99)
        ],
        "s",
        "From the server's request-duration histogram.",
    ),
    (
        "Errors (share of requests)",
        [
            (
                f'sum by (model, version) (rate(shipml_requests_total{{{SEL}, code=~"5.."}}'
                f"[$__rate_interval])) / sum by (model, version) "
                f"(rate(shipml_requests_total{{{SEL}}}[$__rate_interval]))",
                "5xx {{version}}",
            ),
            (
                f'sum by (model, version) (rate(shipml_requests_total{{{SEL}, code=~"4.."}}'
                f"[$__rate_interval])) / sum by (model, version) "
                f"(rate(shipml_requests_total{{{SEL}}}[$__rate_interval]))",
                "4xx {{version}}",
            ),
        ],
        "percentunit",
        "Server errors (5xx) and refused requests (4xx).",
    ),
    (
        "Drift per feature (statistic)",
        [(f"shipml_feature_drift{{{SEL}}}", "{{feature}} ({{method}}) {{version}}")],
        "short",
        "p-value (ks, chisquare, z: drift when small) or distance (wasserstein, "
        "jensenshannon, psi: drift when large), over the server's live window.",
    ),
    (
        "Drifting features",
        [
            (f"shipml_feature_drift_detected{{{SEL}}}", "{{feature}} {{version}}"),
            (f"shipml_drift_share{{{SEL}}}", "share drifted {{version}}"),
        ],
        "short",
        "1 when a feature's test flags the live window; the share of drifted features.",
    ),
    (
        "Prediction drift",
        [
            (f"shipml_prediction_drift{{{SEL}}}", "{{method}} {{version}}"),
            (f"shipml_prediction_drift_detected{{{SEL}}}", "drifted {{version}}"),
        ],
        "short",
        "The predictions' distribution against the model's predictions on its hold-out rows.",
    ),
    (
        "Quality from feedback",
        [
            (f"shipml_quality{{{SEL}}}", "{{metric}} {{version}}"),
            (f"shipml_quality_holdout{{{SEL}}}", "{{metric}} hold-out {{version}}"),
        ],
        "short",
        "Labels sent to the gateway's /v1/feedback, joined to the predictions.",
    ),
    (
        "Rollout weights",
        [("shipml_gateway_weight", "{{variant}}")],
        "percent",
        "The gateway's traffic share per variant (canary steps, A/B weights).",
    ),
]


def dashboard(title: str = "shipml: models in production") -> dict[str, Any]:
    """The dashboard JSON model (what Grafana's "Import dashboard" takes)."""
    panels = []
    for i, (name, targets, unit, description) in enumerate(PANELS):
        panels.append(
            _panel(
                i + 1,
                name,
                targets,
                unit=unit,
                x=(i % 2) * 12,
                y=(i // 2) * 8,
                description=description,
            )
        )
    return {
        "uid": UID,
        "title": title,
        "tags": ["shipml", "mlops"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                _variable("model", "label_values(shipml_model_info, model)"),
                _variable("version", 'label_values(shipml_model_info{model=~"$model"}, version)'),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboard_json(title: str = "shipml: models in production") -> str:
    return json.dumps(dashboard(title), indent=2, sort_keys=True) + "\n"


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard, its variables given concrete values
    (``$model`` → ``.*``, ``$__rate_interval`` → ``1m``): what a test runs against a
    real Prometheus."""
    out = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m")
            out.append(expr.replace("$model", ".*").replace("$version", ".*"))
    return out
