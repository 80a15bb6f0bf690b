"""The alert rules run through Prometheus' own `promtool`: each alert fires on synthetic
series made to breach, stays silent before its `for` has passed, and resolves once the
series recover (`promtool test rules`); the rules file passes `promtool check rules`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shipml.monitor import alerts

PROMTOOL = shutil.which("promtool")
if PROMTOOL is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI needs promtool for the alert tests (scripts/prometheus.sh)")
    pytest.skip("no promtool (run scripts/prometheus.sh)", allow_module_level=True)

RULES = {r["alert"]: r for r in alerts.rules()}
S = 'model="{m}",version="1"'


def _annotations(alert: str, labels: dict[str, str], value: float | None = None) -> dict[str, str]:
    """The alert's annotations as Prometheus expands them (labels and $value)."""
    out = {}
    for key, text in RULES[alert]["annotations"].items():
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
        text = text.replace('{{ $value | printf "%.3f" }}', f"{value:.3f}" if value else "")
        out[key] = text
    return out


def _case(
    alert: str, labels: dict[str, str], fires: str, silent: list[str], value: float | None = None
) -> list[dict]:
    """Firing at ``fires``, nothing at each of ``silent`` (pending, resolved)."""
    expected = {**labels, "severity": RULES[alert]["labels"]["severity"]}
    return [
        {
            "eval_time": fires,
            "alertname": alert,
            "exp_alerts": [
                {"exp_labels": expected, "exp_annotations": _annotations(alert, labels, value)}
            ],
        },
        *({"eval_time": t, "alertname": alert, "exp_alerts": []} for t in silent),
    ]


def _series() -> list[dict[str, str]]:
    def s(name: str, labels: str, values: str) -> dict[str, str]:
        return {"series": f"{name}{{{labels}}}", "values": values}

    return [
        # m1: feature x drifts from 10m to 40m.
        s("shipml_feature_drift_detected", S.format(m="m1") + ',feature="x"', "0x10 1x30 0x30"),
        s("shipml_feature_drift_detected", S.format(m="m1") + ',feature="y"', "0x70"),
        # m2: the predictions drift from 10m to 40m.
        s("shipml_prediction_drift_detected", S.format(m="m2"), "0x10 1x30 0x30"),
        # m3: accuracy falls from 0.95 to 0.80 from 10m to 70m, 100 labels.
        s("shipml_quality", S.format(m="m3") + ',metric="accuracy"', "0.95x10 0.80x60 0.95x40"),
        s("shipml_quality_holdout", S.format(m="m3") + ',metric="accuracy"', "0.95x110"),
        s("shipml_quality_labelled", S.format(m="m3"), "100x110"),
        # m4: the same drop with only 5 labels: never judged.
        s("shipml_quality", S.format(m="m4") + ',metric="accuracy"', "0.95x10 0.80x60 0.95x40"),
        s("shipml_quality_holdout", S.format(m="m4") + ',metric="accuracy"', "0.95x110"),
        s("shipml_quality_labelled", S.format(m="m4"), "5x110"),
        # m5: 100 req/min; 10 of them 500s from 10m to 50m.
        s("shipml_requests_total", S.format(m="m5") + ',protocol="v2",code="200"', "0+100x110"),
        s(
            "shipml_requests_total",
            S.format(m="m5") + ',protocol="v2",code="500"',
            "0x10 0+10x40 400x60",
        ),
        # m6: every request under 5 ms, then from 10m to 50m every one takes 0.3-0.5 s.
        *(
            s(
                "shipml_request_duration_seconds_bucket",
                S.format(m="m6") + f',protocol="v2",le="{le}"',
                values,
            )
            for le, values in (
                ("0.005", "0+100x10 1000x40 1000+100x60"),
                ("0.25", "0+100x10 1000x40 1000+100x60"),
                ("0.5", "0+100x10 1000+100x40 5000+100x60"),
                ("+Inf", "0+100x10 1000+100x40 5000+100x60"),
            )
        ),
        # m7: traffic for 20m, none from 20m to 80m, then traffic again.
        s("shipml_model_info", S.format(m="m7") + ',onnx_sha256="abc"', "1x120"),
        s(
            "shipml_requests_total",
            S.format(m="m7") + ',protocol="v2",code="200"',
            "0+10x20 200x60 200+10x40",
        ),
        # a server down from 10m to 30m; the gateway failing 10% from 10m to 50m.
        s("up", 'job="shipml",instance="server:8080"', "1x10 0x20 1x40"),
        s("shipml_gateway_requests_total", 'variant="champion",code="200"', "0+100x110"),
        s("shipml_gateway_requests_total", 'variant="champion",code="502"', "0x10 0+10x40 400x60"),
    ]


def _labels(m: str, **extra: str) -> dict[str, str]:
    return {"model": m, "version": "1", **extra}


def test_every_alert_fires_on_its_breach_and_resolves(tmp_path: Path):
    (tmp_path / "rules.yaml").write_text(alerts.rules_file("shipml"))
    tests = [
        *_case("ShipmlFeatureDrift", _labels("m1", feature="x"), "35m", ["20m", "60m"]),
        *_case("ShipmlPredictionDrift", _labels("m2"), "35m", ["20m", "60m"]),
        *_case("ShipmlQualityDrop", _labels("m3", metric="accuracy"), "60m", ["30m", "100m"], 0.8),
        *_case("ShipmlErrorRate", _labels("m5"), "40m", ["15m", "80m"]),
        *_case("ShipmlSlowPredictions", _labels("m6"), "40m", ["15m", "80m"]),
        *_case("ShipmlNoTraffic", _labels("m7"), "70m", ["30m", "110m"]),
        *_case(
            "ShipmlModelServerDown",
            {"job": "shipml", "instance": "server:8080"},
            "25m",
            ["12m", "45m"],
        ),
        *_case("ShipmlGatewayErrors", {}, "40m", ["15m", "80m"]),
    ]
    assert {t["alertname"] for t in tests} == set(RULES)  # every alert is tested
    spec = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": _series(), "alert_rule_test": tests}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def test_a_broken_expectation_fails_promtool(tmp_path: Path):
    """The harness can fail: expecting the drift alert while nothing drifts is an error."""
    (tmp_path / "rules.yaml").write_text(alerts.rules_file("shipml"))
    spec = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": _series(),
                "alert_rule_test": _case(
                    "ShipmlFeatureDrift", _labels("m1", feature="y"), "35m", []
                ),
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True
    )
    assert run.returncode != 0


def test_the_rendered_rules_pass_promtool_check(tmp_path: Path):
    text = alerts.rules_file("penguins.shipml", 'service=~"penguins-.*"')
    (tmp_path / "rules.yaml").write_text(text)
    run = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in run.stdout
    timing = alerts.Timing(drift="2s")
    assert alerts.rules(timing=timing)[0]["for"] == "2s"
