"""Every prediction the model server answers is in the audit log, as the model saw it,
once per request id, and committed before the answer leaves."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

from starlette.testclient import TestClient

from shipml.audit import AuditLog, verify
from shipml.config import load_config
from shipml.serving import ModelServer, Predictor
from tests.conftest import shipml, wait_until_ready
from tests.serving.conftest import free_port


def _row(X, i):
    return {
        k: (None if v != v else (v.item() if hasattr(v, "item") else v))
        for k, v in X.iloc[i].items()
    }


def _server(tmp_path, penguins_package, **options):
    log = AuditLog(
        tmp_path / "a.db",
        signing_key=tmp_path / "k.pem",
        checkpoint_dir=tmp_path / "cp",
        checkpoint_interval_s=0.2,
    )
    predictor = Predictor.load(penguins_package.path, name="penguins", version="2")
    return ModelServer(predictor, audit=log, image_digest="sha256:abc", **options)


def test_records_hold_what_the_model_received(tmp_path, penguins_package, penguins_data):
    X, _ = penguins_data
    row = _row(X, 3)  # row 3 of penguins has missing values
    assert any(v is None for v in row.values())
    with TestClient(_server(tmp_path, penguins_package)) as client:
        resp = client.post(
            "/predict",
            json={"instances": [row]},
            headers={"X-Request-ID": "req-1", "X-Shipml-Variant": "challenger"},
        )
        assert resp.status_code == 200
        client.post("/predict", json={"instances": [{"island": "Mars"}]})  # a 400: no record
    reopened = AuditLog(tmp_path / "a.db", writer=False)
    (record,) = reopened.find("req-1")
    assert record["model"] == "penguins" and record["version"] == "2"
    # A client cannot choose the variant recorded (issue 12): unattested, it is "direct".
    assert record["variant"] == "direct" and record["image_digest"] == "sha256:abc"
    assert record["onnx_sha256"] == penguins_package.onnx_sha256
    assert record["output"]["label"] == [p["label"] for p in resp.json()["predictions"]]
    columns = record["input"]["columns"]
    assert columns["island"] == [X.iloc[3]["island"]]
    for name, value in row.items():  # a missing number is the NaN the model got, not null
        if value is None:
            assert columns[name] in ([""], ["NaN"]), (name, columns[name])
    assert reopened.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 1
    assert verify(reopened, checkpoint_dir=tmp_path / "cp").ok


def test_a_non_finite_number_is_never_logged_as_null(tmp_path, penguins_package, penguins_data):
    X, _ = penguins_data
    row = _row(X, 0)
    numeric = next(k for k, v in row.items() if isinstance(v, float))
    body = json.dumps({"instances": [row]}).replace(
        f'"{numeric}": {row[numeric]}', f'"{numeric}": Infinity'
    )
    assert "Infinity" in body
    with TestClient(_server(tmp_path, penguins_package)) as client:
        resp = client.post(
            "/predict", content=body, headers={"X-Request-ID": "inf", "content-type": "json"}
        )
    records = AuditLog(tmp_path / "a.db", writer=False).find("inf")
    if resp.status_code == 200:  # accepted: the record says what the model got
        assert records[0]["input"]["columns"][numeric] == ["Infinity"]
    else:  # refused by the validator: nothing answered, nothing recorded
        assert resp.status_code == 400 and records == []


def test_a_duplicate_request_id_is_refused_with_409(tmp_path, penguins_package, penguins_data):
    X, _ = penguins_data
    with TestClient(_server(tmp_path, penguins_package)) as client:
        first = client.post(
            "/predict", json={"instances": [_row(X, 0)]}, headers={"X-Request-ID": "same"}
        )
        again = client.post(
            "/predict", json={"instances": [_row(X, 1)]}, headers={"X-Request-ID": "same"}
        )
    assert first.status_code == 200
    assert again.status_code == 409 and "'same'" in again.json()["error"]
    assert "predictions" not in again.json()  # a refused request gets no answer
    (record,) = AuditLog(tmp_path / "a.db", writer=False).find("same")
    assert record["output"]["label"] == [p["label"] for p in first.json()["predictions"]]


def test_inputs_can_be_kept_as_a_hash(tmp_path, penguins_package, penguins_data):
    X, _ = penguins_data
    with TestClient(_server(tmp_path, penguins_package, audit_inputs=False)) as client:
        client.post("/predict", json={"instances": [_row(X, 0)]}, headers={"X-Request-ID": "h"})
    (record,) = AuditLog(tmp_path / "a.db", writer=False).find("h")
    assert set(record["input"]) == {"sha256"} and len(record["input"]["sha256"]) == 64


def _hammer(port: int, bodies: list[bytes], prefix: str, seconds: float) -> list[str]:
    """Clients POST until the server dies; returns the ids answered 200."""
    answered: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(10**6):
            rid = f"{prefix}-{n}-{i}"
            try:
                conn.request("POST", "/predict", bodies[i % len(bodies)], {"X-Request-ID": rid})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                return
            if resp.status == 200:
                with lock:
                    answered.append(rid)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    return answered if not threads else _join(threads, answered)


def _join(threads, answered):
    for t in threads:
        t.join(timeout=30)
    return answered


def test_three_kill_9_rounds_lose_no_answered_prediction(tmp_path, penguins_package, penguins_data):
    """`shipml serve` in a project (audited by default, its key pinned on first use),
    SIGKILLed under load three times; every answer given is in the log, which verifies."""
    X, _ = penguins_data
    (tmp_path / "shipml.toml").write_text('# my project\n[project]\nname = "audited"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    bodies = [json.dumps({"instances": [_row(X, i)]}).encode() for i in range(50)]
    answered: list[str] = []
    for round_ in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shipml",
                "serve",
                str(penguins_package.path),
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until_ready(port)
        killer = threading.Timer(1.5, proc.send_signal, args=(signal.SIGKILL,))
        killer.start()
        answered += _hammer(port, bodies, f"round{round_}", 0)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    assert len(answered) > 300
    config = load_config(tmp_path)
    assert config.audit.key_fingerprint.startswith("sha256:")  # pinned on first use
    assert (tmp_path / "shipml.toml").read_text().startswith("# my project")
    log = AuditLog(tmp_path / ".shipml" / "audit" / "audit.db", writer=False)
    recorded = {row[0] for row in log.db.execute("SELECT request_id FROM entries")}
    assert [rid for rid in answered if rid not in recorded] == []
    verified = shipml("audit", "verify", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert f"verified {len(recorded)} records" in verified.stdout
