"""A team's services on this machine, shared by the end-to-end tests of the session: an
S3-compatible server (moto in server mode), a PostgreSQL schema and the team's MLflow
tracking server (`shipml server start`) on both.

PostgreSQL comes from POSTGRES_TEST_URL (scripts/postgres.sh); without it the team tests
are skipped, except in CI (CI=true), where that is a failure. The credentials are made up
here and reach the processes through their environment only: the tests check that none
of them is ever printed."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.serving.conftest import free_port

BUCKET = "shipml-team"


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # what a client needs (with secrets)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            ended = f"the process ended ({proc.returncode})"
            raise AssertionError(f"{url}: {ended}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=3):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """moto's S3 in server mode on a free port, with a bucket; made-up keys."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "AWS_ENDPOINT_URL": url,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        wait_for(url, proc, log)
        import boto3

        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=BUCKET)
        yield Service(url, proc, log, env)
    finally:
        stop(proc)


def _postgres_url() -> str:
    url = os.environ.get("POSTGRES_TEST_URL", "")
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI needs PostgreSQL: POSTGRES_TEST_URL is not set (scripts/postgres.sh)")
        pytest.skip("no PostgreSQL (set POSTGRES_TEST_URL)")
    return url


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[tuple[str, str, list[str]]]:
    """(URL without the password, the password, a list to add schemas to: each is made on
    first use and dropped at the end)."""
    import psycopg

    from shipml.tracking.server import split_password

    url = _postgres_url()
    bare, password = split_password(url)
    made: list[str] = []
    yield bare, password or "", made
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in made:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def pg_schema(pg: tuple[str, str, list[str]], prefix: str) -> str:
    """A fresh schema; returns a URL (without the password) whose search_path is it."""
    import psycopg

    bare, password, made = pg
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(bare, password=password, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    made.append(schema)
    sep = "&" if "?" in bare else "?"
    return f"{bare}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def team_server(
    s3_server: Service,
    pg_schemas: tuple[str, str, list[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """`shipml server start`: MLflow on PostgreSQL, artifacts in the S3 bucket. The
    database password reaches it as PGPASSWORD, the keys as AWS_*."""
    port = free_port()
    folder = tmp_path_factory.mktemp("team-server")
    log = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    env.update(s3_server.env)
    env["PGPASSWORD"] = pg_schemas[1]
    env["SHIPML_SERVER_BACKEND_URI"] = pg_schema(pg_schemas, "mlflow")
    cmd = [sys.executable, "-m", "shipml", "server", "start", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--artifacts", f"s3://{BUCKET}/mlflow"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/health", proc, log, timeout=180)
        yield Service(url, proc, log, {**s3_server.env, "PGPASSWORD": pg_schemas[1]})
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def podman_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman's Docker-compatible API on a socket of this session's own
    (`podman system service`); yields its DOCKER_HOST."""
    from tests.containers.images import need_podman

    need_podman()
    folder = tmp_path_factory.mktemp("podman-api")
    sock = folder / "podman.sock"
    host = f"unix://{sock}"
    with (folder / "service.log").open("wb") as out:
        proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", host], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((folder / "service.log").read_text())
            time.sleep(0.1)
        yield host
    finally:
        stop(proc)
