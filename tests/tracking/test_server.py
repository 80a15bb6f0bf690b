"""`shipml server start`: the MLflow command it runs, and no password in it or its output."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.config import ServerSection
from shipml.errors import ConfigError
from shipml.tracking.server import (
    plan_server,
    redact,
    server_environ,
    split_password,
    ui_command,
)
from tests.conftest import shipml

URI = "postgresql://team:s3cr%40t@db.acme.io:5432/mlflow?sslmode=require"


def test_a_password_leaves_the_command_line_for_pgpassword(tmp_path: Path):
    plan = plan_server(ServerSection(backend_uri=URI, artifacts="s3://b/mlflow"), tmp_path)
    argv = " ".join(plan.argv)
    assert "s3cr" not in argv and "s3cr" not in plan.backend
    assert "postgresql+psycopg://team@db.acme.io:5432/mlflow?sslmode=require" in argv
    assert plan.env == {"PGPASSWORD": "s3cr@t"}  # decoded, as libpq decodes it in a URI
    assert plan.backend == "postgresql+psycopg://team@db.acme.io:5432/mlflow?sslmode=require"
    assert redact(URI) == "postgresql://team:***@db.acme.io:5432/mlflow?sslmode=require"
    assert "--serve-artifacts" in plan.argv and "s3://b/mlflow" in plan.argv
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert split_password("http://[::1]:5000") == ("http://[::1]:5000", None)


def test_defaults_keep_the_store_under_the_folder(tmp_path: Path):
    plan = plan_server(ServerSection(), tmp_path, port=0)
    assert f"sqlite:///{tmp_path}/.shipml/server/mlflow.db" in plan.argv
    assert str(tmp_path / ".shipml/server/artifacts") in plan.argv
    assert plan.url == "http://127.0.0.1:0" and plan.env == {}


@pytest.mark.parametrize(
    "uri", ["http://mlflow:5000", "../../etc/passwd", "", "postgresql" + "x" * 5000]
)
def test_what_is_not_a_database_is_refused(tmp_path: Path, uri: str):
    if not uri:
        return  # empty is the SQLite default
    with pytest.raises(ConfigError, match="must be a database URI"):
        plan_server(ServerSection(backend_uri=uri), tmp_path)


def test_cli_never_prints_the_password(tmp_path: Path):
    done = shipml(
        "server",
        "start",
        "--port",
        "0",
        cwd=tmp_path,
        env={"SHIPML_SERVER_BACKEND_URI": "mongodb://u:hunter2@h/db"},
    )
    assert done.returncode == 3 and "must be a database URI" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_the_ui_never_puts_a_database_password_on_its_command_line():
    uri = "postgresql://ml:s3cr%40t@db:5432/mlflow"
    command, env = ui_command(uri, uri, "/srv/art", "127.0.0.1", 5000)
    assert not any("s3cr" in part for part in command)  # ps shows the command line
    assert env == {"PGPASSWORD": "s3cr@t"}
    assert command[command.index("--backend-store-uri") + 1] == (
        "postgresql+psycopg://ml@db:5432/mlflow"
    )
    local, none = ui_command("sqlite:///x.db", "sqlite:///x.db", "/srv/art/", "0.0.0.0", 5001)
    assert none == {} and local[-6:] == ["--host", "0.0.0.0", "--port", "5001", "--workers", "1"]
    assert "/srv/art/mlruns" in local
    with pytest.raises(ConfigError, match="different passwords"):
        ui_command(uri, uri.replace("s3cr%40t", "other"), "/a", "127.0.0.1", 5000)


def test_mlflow_servers_start_without_the_job_runner_unless_the_environment_asks():
    """MLflow 3's job runner (huey consumers for GenAI jobs) is off; a user's own setting
    of the variable is kept; telemetry is never sent; the secrets are added."""
    env = server_environ({"PGPASSWORD": "pw"}, {"PATH": "/bin", "MLFLOW_ENABLE_TELEMETRY": "1"})
    assert env == {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": "/bin",
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "PGPASSWORD": "pw",
    }
    kept = server_environ({}, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert kept["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"
