"""`shipml monitor` on a real project made by the template: predictions of the served
model in the audit log (the real server app, audited), feedback labels, the registry.

Its own hold-out rows: no drift, exit 0. One feature shifted by 2 standard deviations
and one category's share doubled: exactly those two flagged in the table, monitor.json,
monitor.html; exit code 16; both files attached to the version. Then `--on-breach
retrain` after new labelled rows reached the source: a new challenger version, its test
record, a gated promotion decision — all in the audit log."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pandas as pd
import pytest

from shipml.audit import open_log
from shipml.config import load_config
from shipml.model import ModelPackage
from shipml.project.serving import serve_spec
from shipml.serving.server import build_app
from shipml.templates import create_project
from shipml.tracking import Registry, parse_model_ref, tracker_for
from tests.conftest import shipml_here
from tests.monitor.conftest import SHIFTED, TRIPLED, drifted, holdout_rows

ENV = {"COLUMNS": "200"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template project, trained and registered (penguins/1). Lean: a 20-tree forest,
    the data and model suites without the canary rehearsal (tests/testing has those)."""
    folder = create_project(tmp_path_factory.mktemp("m") / "penguins", "penguins")
    toml = folder / "shipml.toml"
    text = toml.read_text()
    for old, new in (
        ('suites = ["unit", "data", "model", "api", "browser"]', 'suites = ["data", "model"]'),
        ("n_estimators = 200", "n_estimators = 20"),
        ("[tests.model]\n", "[tests.model]\ncanary = false\n"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    toml.write_text(text)
    run = shipml_here("run", cwd=folder)
    assert run.returncode == 0, run.stderr
    return folder


def predict_through_the_server(project: Path, frame: pd.DataFrame, prefix: str) -> list[str]:
    """Each row through the real model server app (in process), audited as when served."""
    config = load_config(project)
    app = build_app(serve_spec(config, "penguins/1"))
    app.warm_up()
    ids = []

    async def send_all() -> None:
        for i in range(len(frame)):
            row = {k: (None if v != v else v) for k, v in frame.iloc[i].to_dict().items()}
            rid = f"{prefix}-{i}"
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/predict",
                "headers": [(b"x-request-id", rid.encode())],
            }
            body = orjson.dumps({"instances": [row]})
            sent = []

            async def receive(body=body):
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message, sent=sent):
                sent.append(message)

            await app(scope, receive, send)
            assert sent[0]["status"] == 200, sent
            ids.append(rid)

    asyncio.run(send_all())
    app.audit.close()
    return ids


def feedback(project: Path, ids: list[str], labels: pd.Series) -> None:
    """The records the gateway writes for POST /v1/feedback (tests/rollout checks that)."""
    log = open_log(load_config(project))
    try:
        log.append_many(
            [
                {"kind": "feedback", "request_id": i, "label": y}
                for i, y in zip(ids, labels, strict=True)
            ]
        )
    finally:
        log.close()


@pytest.fixture(scope="module")
def package(project: Path) -> ModelPackage:
    config = load_config(project)
    registry = Registry(tracker_for(config))
    return ModelPackage.load(registry.local_path(registry.resolve(parse_model_ref("penguins/1"))))


def flagged(stdout: str) -> set[str]:
    rows = [line for line in stdout.splitlines() if "│" in line]
    names = {line.split("│")[1].strip() for line in rows if "yes" in line.split("│")[5]}
    return names - {"(prediction)"}  # the predictions' own drift is a row of its own


def test_own_holdout_rows_do_not_drift(project, package):
    frame, labels = holdout_rows(package, repeat=2)
    ids = predict_through_the_server(project, frame, "ref")
    feedback(project, ids, labels)
    run = shipml_here("monitor", "penguins/1", "--since", "1h", cwd=project, env=ENV)
    assert run.returncode == 0, run.stdout + run.stderr
    assert flagged(run.stdout) == set()
    result = json.loads((project / "monitor" / "monitor.json").read_text())
    assert result["rows"] == len(frame) and not result["breached"]
    assert result["drift"]["drifted_features"] == []
    assert result["quality"]["labelled"] == len(frame)
    assert result["quality"]["metrics"]["accuracy"] == pytest.approx(
        result["quality"]["holdout"]["accuracy"]
    )
    tags = Registry(tracker_for(load_config(project))).resolve(parse_model_ref("penguins/1")).tags
    assert tags["shipml.monitor.status"] == "ok"
    assert json.loads(tags["shipml.monitor.files"])[1].endswith("monitor.html")


def test_drifted_rows_flag_exactly_the_changed_features(project, package):
    frame, labels = holdout_rows(package, repeat=2)
    moved = drifted(frame)
    ids = predict_through_the_server(project, moved, "drift")
    feedback(project, ids, labels)
    run = shipml_here(
        "monitor", "penguins/1", "--last", str(len(moved)), "--window", "100", cwd=project, env=ENV
    )
    assert run.returncode == 16, run.stdout + run.stderr
    assert "drift detected" in run.stderr
    expected = {SHIFTED, TRIPLED[0]}
    assert flagged(run.stdout) == expected
    result = json.loads((project / "monitor" / "monitor.json").read_text())
    assert set(result["drift"]["drifted_features"]) == expected
    assert [w["rows"] for w in result["windows"]] == [100, 72]  # windows of 100 rows
    html = (project / "monitor" / "monitor.html").read_text()
    drifted_cards = html.count(": drifted</text>") or html.count(": drifted<")
    assert drifted_cards >= 2  # the two features' histograms (and the predictions')
    assert "<script" not in html and "<link" not in html and 'href="http' not in html
    tags = Registry(tracker_for(load_config(project))).resolve(parse_model_ref("penguins/1")).tags
    assert tags["shipml.monitor.status"] == "breach"


def test_on_breach_retrain_makes_a_gated_challenger(project, package):
    frame, labels = holdout_rows(package, repeat=2)
    moved = drifted(frame, seed=1)
    # New labelled rows reach the source, as they would in production.
    source = project / "data" / "penguins.csv"
    fresh = moved.assign(species=labels.to_numpy(), year=2009)
    original = pd.read_csv(source)
    pd.concat([original, fresh[original.columns]], ignore_index=True).to_csv(source, index=False)
    run = shipml_here(
        "monitor", "penguins/1", "--last", "200", "--on-breach", "retrain", cwd=project, env=ENV
    )
    assert run.returncode == 16, run.stdout + run.stderr  # the breach is still reported
    assert "retrain" in run.stdout
    config = load_config(project)
    registry = Registry(tracker_for(config))
    challenger = registry.resolve(parse_model_ref("penguins@challenger"))
    assert challenger.version == "2"
    assert "shipml.tests.record" in challenger.tags or any(
        k.startswith("shipml.tests") for k in challenger.tags
    )
    events = [e for e in open_log(config, writer=False).find_events()]
    kinds = [e.get("event") for e in events]
    for event in (
        "monitor",
        "retrain started",
        "retrain snapshot",
        "retrain run",
        "retrain tests",
        "retrain decision",
    ):
        assert event in kinds, kinds
    decision = next(e for e in reversed(events) if e.get("event") == "retrain decision")
    assert decision["challenger"] == "2" and decision["decision"] in ("promoted", "refused")
    if decision["decision"] == "promoted":
        assert "promotion" in kinds
        assert registry.aliases("penguins")["champion"] == "2"
    else:
        assert decision["unmet_gates"]


def test_the_dashboard_renders_in_chromium(project):
    """`shipml dashboard` over the project as the tests above left it (two monitoring
    passes, a retrained challenger, audited predictions)."""
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.monitor.conftest import ARTIFACTS, look_at
    from tests.serving.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipml", "dashboard", "--port", str(port)],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "healthz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.2)
        seen = look_at(url, ARTIFACTS / "dashboard.png")
        with urllib.request.urlopen(url + "api/overview", timeout=30) as resp:
            overview = json.loads(resp.read())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert seen["status"] == 200 and seen["console"] == [] and seen["refused"] == []
    assert seen["marks"] and all(n >= 1 for n in seen["marks"]), seen["marks"]
    text = seen["text"]
    for shown in ("penguins", "challenger", "Recent predictions", "verified", "drift-171"):
        assert shown in text, shown
    versions = overview["models"][0]["versions"]
    assert [v["version"] for v in versions] == ["2", "1"]
    assert versions[1]["monitor"] == "breach" and versions[0]["tests"] in ("passed", "failed")
    assert overview["predictions"]["verified"]["ok"] is True
