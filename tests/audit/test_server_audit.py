"""Every prediction the model server answers is in the audit log, durably."""

import json
import os
import subprocess
import sys

from starlette.testclient import TestClient

from shipml.audit import AuditLog, verify
from shipml.serving import ModelServer, Predictor
from tests.conftest import hammer_then_kill, wait_until_ready
from tests.serving.conftest import free_port


def _row(X, i):
    return {
        k: (None if v != v else (v.item() if hasattr(v, "item") else v))
        for k, v in X.iloc[i].items()
    }


def test_records_carry_the_lineage_and_verify(tmp_path, penguins_package, penguins_data):
    X, _ = penguins_data
    log = AuditLog(
        tmp_path / "a.db", signing_key=tmp_path / "k.pem", checkpoint_dir=tmp_path / "cp"
    )
    app = ModelServer(
        Predictor.load(penguins_package.path, name="penguins", version="2"),
        audit=log,
        image_digest="sha256:abc",
    )
    with TestClient(app) as client:
        resp = client.post(
            "/predict",
            json={"instances": [_row(X, 3)]},
            headers={"X-Request-ID": "req-1", "X-Shipml-Variant": "challenger"},
        )
        assert resp.status_code == 200
        client.post("/predict", json={"instances": [{"island": "Mars"}]})  # a 400: no record
    reopened = AuditLog(tmp_path / "a.db")
    (record,) = reopened.find("req-1")
    assert record["model"] == "penguins" and record["version"] == "2"
    # A client cannot choose the variant recorded (issue 12): unattested, it is "direct".
    assert record["variant"] == "direct" and record["image_digest"] == "sha256:abc"
    assert record["onnx_sha256"] == penguins_package.onnx_sha256
    assert record["output"]["label"] == resp.json()["predictions"][0:1] or record["output"]
    assert record["input"]["instances"][0]["island"] == X.iloc[3]["island"]
    assert reopened.size == 1
    assert verify(reopened, checkpoint_dir=tmp_path / "cp").ok  # shutdown signed a checkpoint


def test_inputs_can_be_kept_as_a_hash(tmp_path, penguins_package, penguins_data):
    X, _ = penguins_data
    log = AuditLog(tmp_path / "a.db")
    app = ModelServer(
        Predictor.load(penguins_package.path, name="penguins"), audit=log, audit_inputs=False
    )
    with TestClient(app) as client:
        client.post("/predict", json={"instances": [_row(X, 0)]}, headers={"X-Request-ID": "h"})
    (record,) = AuditLog(tmp_path / "a.db").find("h")
    assert set(record["input"]) == {"sha256"} and len(record["input"]["sha256"]) == 64


def test_kill_9_under_load_loses_no_answered_request(tmp_path, penguins_package, penguins_data):
    X, _ = penguins_data
    (tmp_path / "shipml.toml").write_text('[project]\nname = "audited"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipml", "serve", str(penguins_package.path), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until_ready(port)
    bodies = [json.dumps({"instances": [_row(X, i)]}).encode() for i in range(50)]
    answered = hammer_then_kill(port, bodies, proc)
    assert len(answered) > 100
    log = AuditLog(tmp_path / ".shipml" / "audit" / "audit.db")
    recorded = {row[0] for row in log.conn.execute("SELECT request_id FROM entries")}
    assert [rid for rid in answered if rid not in recorded] == []
    assert verify(log).ok  # the chain is intact up to the last durable record
