"""A real Prometheus scraping a running `shipml serve`: reference-like traffic, then
drifted traffic, then reference-like again. The drift alert goes pending → firing →
inactive, seen through Prometheus' HTTP API; every query of the Grafana dashboard runs
on the same Prometheus. Short intervals everywhere (scrape and rules every second, a
3-second live window, `for: 2s`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shipml.monitor import alerts, grafana
from tests.monitor.conftest import drifted, holdout_rows
from tests.serving.conftest import free_port

PROMETHEUS = shutil.which("prometheus")
if PROMETHEUS is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Prometheus for this test (scripts/prometheus.sh)")
    pytest.skip("no prometheus (run scripts/prometheus.sh)", allow_module_level=True)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _wait(what, seconds: float, step: float = 0.25):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(step)
    return what()


@pytest.fixture
def served(monitored_package, tmp_path: Path) -> Iterator[str]:
    """`shipml serve` of the package with a 3 s live window scored every 0.3 s."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "shipml.toml").write_text(
        '[project]\nname = "penguins"\n[audit]\nenabled = false\n'
        "[monitor]\nlive_window_s = 3.0\nlive_interval_s = 0.3\nmin_rows = 20\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shipml",
            "-C",
            str(project),
            "serve",
            str(monitored_package.path),
            "--name",
            "penguins",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = _wait(lambda: _ready(url), 60, 0.1)
        assert ready, proc.stderr.read().decode() if proc.poll() is not None else "not ready"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def prometheus(served: str, tmp_path: Path) -> Iterator[str]:
    rules = alerts.rules_file("shipml", timing=alerts.Timing(drift="2s", rate="5s"))
    (tmp_path / "rules.yaml").write_text(rules)
    target = served.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "scrape_configs": [{"job_name": "shipml", "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert _wait(lambda: _prom_ready(url), 30, 0.1), "Prometheus did not start"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _prom_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


class Traffic:
    """A client thread sending rows of the current frame, one per request."""

    def __init__(self, url: str, frame) -> None:
        self.url, self.frame, self.stop = url, frame, threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            rows = self.frame
            row = {
                k: (None if v != v else v) for k, v in rows.iloc[i % len(rows)].to_dict().items()
            }
            body = json.dumps({"instances": [row]}).encode()
            request = urllib.request.Request(
                self.url + "/predict", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=5) as resp:
                assert resp.status == 200
            self.sent += 1
            i += 1
            time.sleep(0.004)


def _state(prom: str, alert: str) -> str:
    groups = _get(prom + "/api/v1/rules?type=alert")["data"]["groups"]
    rule = next(r for g in groups for r in g["rules"] if r["name"] == alert)
    return str(rule["state"])


def _firing_features(prom: str) -> set[str]:
    found = _get(prom + "/api/v1/alerts")["data"]["alerts"]
    return {
        a["labels"]["feature"]
        for a in found
        if a["labels"]["alertname"] == "ShipmlFeatureDrift" and a["state"] == "firing"
    }


def test_prometheus_fires_the_drift_alert_and_it_resolves(monitored_package, served, prometheus):
    frame, _ = holdout_rows(monitored_package)
    traffic = Traffic(served, frame)
    try:
        # Reference-like traffic: scraped, scored, and nothing pending or firing.
        assert _wait(lambda: _query(prometheus, "shipml_monitor_window_rows") >= 20, 20)
        time.sleep(3)
        assert _state(prometheus, "ShipmlFeatureDrift") == "inactive"
        # Drifted traffic: pending, then firing for exactly the two drifted features.
        traffic.frame = drifted(frame)
        states = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "firing" not in states:
            states.append(_state(prometheus, "ShipmlFeatureDrift"))
            time.sleep(0.2)
        assert "pending" in states and states[-1] == "firing", states
        assert _wait(lambda: _firing_features(prometheus) == {"island", "bill_length_mm"}, 10), (
            _firing_features(prometheus)
        )
        # Reference-like again: the window forgets the drift and the alert resolves.
        traffic.frame = frame
        assert _wait(lambda: _state(prometheus, "ShipmlFeatureDrift") == "inactive", 20)
        for expr in grafana.queries(grafana.dashboard()):
            answer = _get(prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
            assert answer["status"] == "success", expr
    finally:
        traffic.stop.set()
        traffic.thread.join(timeout=10)
    assert traffic.sent > 100


def _query(prom: str, expr: str) -> float:
    result = _get(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]
    values = [float(r["value"][1]) for r in result["result"]]
    return max(values) if values else 0.0
