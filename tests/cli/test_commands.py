"""The read-side commands print what the store holds."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import session_commands, shipml_here


def test_data_add_ls_show(project: Path):
    added = shipml_here("data", "add", "penguins", "data/penguins.csv", cwd=project)
    assert added.returncode == 0, added.stderr
    assert "added penguins@1 · 344 rows × 8 columns" in added.stdout
    again = shipml_here("data", "add", "penguins", "data/penguins.csv", cwd=project)
    assert "unchanged: penguins@1" in again.stdout
    listed = shipml_here("data", "ls", cwd=project)
    assert "penguins" in listed.stdout and "344" in listed.stdout
    shown = shipml_here("data", "show", "penguins@1", cwd=project)
    assert shown.returncode == 0, shown.stderr
    for text in ("sha256", "island", "Biscoe", "sex", "yes", "bill_length_mm", "every row"):
        assert text in shown.stdout
    # --json: machine-readable, the full digest and path a table would have to fold.
    listed = json.loads(shipml_here("data", "ls", "--json", cwd=project).stdout)
    assert [(d["name"], d["version"], d["rows"]) for d in listed] == [("penguins", 1, 344)]
    assert len(listed[0]["sha256"]) == 64 and listed[0]["source"].endswith("penguins.csv")
    shown_json = json.loads(shipml_here("data", "show", "penguins", "--json", cwd=project).stdout)
    assert shown_json["sha256"] == listed[0]["sha256"] and shown_json["ref"] == "penguins@1"
    assert {c["name"] for c in shown_json["schema"]} >= {"island", "sex", "bill_length_mm"}
    assert shown_json["profile"]["columns"]["island"]["missing"] == 0
    assert shown_json["stored"] and shown_json["versions"][0]["version"] == 1


def test_run_then_models_ls_show_alias(project: Path):
    ran = shipml_here("run", "-p", "n_estimators=5", cwd=project)
    assert ran.returncode == 0, ran.stderr
    assert "model: registered penguins/1" in ran.stdout
    assert "6 ran, 0 cached" in ran.stdout
    again = shipml_here("run", "-p", "n_estimators=5", cwd=project)
    assert "0 ran, 6 cached" in again.stdout and "cached" in again.stderr
    moved = shipml_here("models", "alias", "penguins/1", "challenger", cwd=project)
    assert moved.returncode == 0 and "penguins@challenger → version 1" in moved.stdout
    older = shipml_here("models", "alias", "penguins", "1", "challenger", cwd=project)
    assert older.returncode == 0, older.stderr  # NAME VERSION ALIAS, as before
    unread = shipml_here("models", "alias", "penguins", "challenger", cwd=project)
    assert unread.returncode == 7 and "takes NAME/VERSION ALIAS" in unread.stderr
    listed = shipml_here("models", "ls", cwd=project)
    assert "challenger → v1" in listed.stdout
    shown = shipml_here("models", "show", "penguins@challenger", cwd=project)
    assert shown.returncode == 0, shown.stderr
    for text in (
        "penguins/1",
        "model.onnx",
        "lineage.json",
        "signature.json",
        "profile.json",
        "dataset  penguins@1 sha256",
        "accuracy=",
        "Chinstrap",
    ):
        assert text in shown.stdout, text
    versions = shipml_here("models", "show", "penguins", cwd=project)
    assert "challenger" in versions.stdout
    models = json.loads(shipml_here("models", "ls", "--json", cwd=project).stdout)
    assert models == [
        {"name": "penguins", "versions": 1, "latest": "1", "aliases": {"challenger": "1"}}
    ]
    one = json.loads(
        shipml_here("models", "show", "penguins@challenger", "--json", cwd=project).stdout
    )
    assert one["version"]["ref"] == "penguins/1" and one["version"]["aliases"] == ["challenger"]
    assert 0.0 <= one["version"]["metrics"]["accuracy"] <= 1.0
    package = one["package"]
    assert len(package["files"]["model.onnx"]["sha256"]) == 64
    assert package["lineage"]["datasets"]["penguins"]["version"] == 1
    assert "Chinstrap" in package["signature"]["classes"]
    folder = json.loads(
        shipml_here("models", "show", package["path"], "--json", cwd=project).stdout
    )
    assert folder["version"] is None and folder["package"]["files"] == package["files"]
    listing = json.loads(shipml_here("models", "show", "penguins", "--json", cwd=project).stdout)
    assert [v["version"] for v in listing["versions"]] == ["1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ui_serves_the_mlflow_ui_on_the_project_store(project: Path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipml", "ui", "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # so the MLflow server's own children can be stopped too
    )
    try:
        deadline = time.monotonic() + 90
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.5)
        assert body.strip() == b"OK"
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200
        # MLflow's job runner (huey consumers, for GenAI jobs shipml never submits) is off:
        # the server and its one worker, not eight more processes.
        started = session_commands(proc.pid)
        assert any("mlflow" in c and "server" in c for c in started), started
        assert not [c for c in started if "huey" in c or "_job_runner" in c], started
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
