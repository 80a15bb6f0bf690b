"""A team's store for real: two clones of one project share an MLflow tracking server on
PostgreSQL with its artifacts in an S3-compatible bucket, snapshots in the same bucket
and the audit log in PostgreSQL. The first person adds data, trains, tests and promotes;
the second sees the champion, serves it and explains a prediction. No credential is ever
printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from shipml.templates import create_project
from tests.conftest import wait_until_ready
from tests.e2e.conftest import BUCKET, Service, pg_schema, stop
from tests.serving.conftest import free_port

PROJECT = "teamguins"
ROW = {
    "island": "Biscoe",
    "bill_length_mm": 47.5,
    "bill_depth_mm": 15.0,
    "flipper_length_mm": 218.0,
    "body_mass_g": 4950.0,
    "sex": "male",
}


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _env(service: Service) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    return {**env, **service.env}


def _shipml(outputs: list[str], env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "shipml", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outputs.append(done.stdout + done.stderr)
    assert done.returncode == 0, f"shipml {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_two_clones_share_one_store(tmp_path: Path, team_server: Service, pg_schemas):
    audit_url = pg_schema(pg_schemas, "audit")
    first = create_project(tmp_path / "first" / PROJECT, PROJECT)
    toml = first / "shipml.toml"
    text = toml.read_text()
    text = text.replace('uri = "sqlite:///.shipml/mlflow.db"', f'uri = "{team_server.url}"')
    text = text.replace('root = ".shipml/artifacts"', f'root = "s3://{BUCKET}/{PROJECT}"')
    # The canary rehearsal (a latency bound, tested on its own) is left out: what is
    # tested here is the shared store, and a loaded machine must not fail it.
    text = text.replace("[tests.model]\n", "[tests.model]\ncanary = false\n")
    # One audit log, one signing key: a team keeps it in its secret store, mounted at the
    # same path for every writer (here a file both clones point at).
    key = tmp_path / "team-secrets" / "audit-signing.key"
    toml.write_text(text + f'\n[audit]\npath = "{audit_url}"\nsigning_key = "{key}"\n')
    _git("commit", "-qam", "team store", cwd=first)
    second = tmp_path / "second" / PROJECT
    _git("clone", "-q", str(first), str(second), cwd=tmp_path)

    env, outputs = _env(team_server), []
    # The first person: a snapshot in the bucket, a run on the server, tests, promotion.
    _shipml(outputs, env, first, "data", "add", "penguins", "data/penguins.csv")
    _shipml(outputs, env, first, "run", "--alias", "challenger")
    _shipml(outputs, env, first, "test", f"{PROJECT}@challenger", "--suite", "data,model")
    _shipml(outputs, env, first, "promote", f"{PROJECT}@challenger")

    # The second person, on their own clone (no local store at all), sees it and serves it.
    assert not (second / ".shipml").exists()
    shown = _shipml(outputs, env, second, "models", "show", PROJECT)
    assert "champion" in shown
    assert "penguins" in _shipml(outputs, env, second, "data", "ls")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "shipml", "serve", f"{PROJECT}@champion", "--port", str(port)],
            cwd=second,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(port, timeout=300)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            json.dumps({"instances": [ROW]}).encode(),
            {"Content-Type": "application/json", "X-Request-ID": "team-1"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.loads(resp.read())
    finally:
        stop(server)
    outputs.append(log.read_text(errors="replace"))
    assert answer["predictions"][0]["label"] == "Gentoo"

    explained = _shipml(outputs, env, second, "audit", "explain", "team-1")
    for expected in (f"{PROJECT}/1", "champion", "penguins"):
        assert expected in explained, explained
    # The first person's promotion is in the shared log too.
    assert "verified" in _shipml(outputs, env, first, "audit", "verify").lower()

    # Nothing the services or the commands printed holds a secret.
    outputs.append(team_server.output())
    secret = env["AWS_SECRET_ACCESS_KEY"]
    password = env["PGPASSWORD"]
    for text in outputs:
        assert secret not in text
        assert f":{password}@" not in text and f"PGPASSWORD={password}" not in text
    # ... nor the server's command line, which `ps` shows to everyone on the machine.
    for pid in _children(team_server.process.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert f":{password}@" not in cmdline and secret not in cmdline


def _children(pid: int) -> list[int]:
    from tests.conftest import children_of

    found, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        found += kids
        todo += kids
    return [pid, *found]
