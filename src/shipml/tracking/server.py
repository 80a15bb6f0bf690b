"""A team's store: MLflow's tracking server on a database, artifacts in an object store.

``shipml server start`` runs ``mlflow server`` with the settings of ``[server]``: the
backend store (PostgreSQL for a team, SQLite on one machine) and the place where the
server keeps the artifacts it is sent (an S3-compatible bucket for a team). Each project
then points ``[tracking] uri`` at the server's URL (docs/team.md).

Credentials come from the environment and are never printed nor put on the command
line, where ``ps`` would show them: a password in the backend URI is taken out of it and
handed to the server as ``PGPASSWORD`` (libpq reads it); the object store's keys are the
usual ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_ENDPOINT_URL`` for an
S3-compatible server other than AWS), read by boto3 in the server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from shipml.config import ServerSection
from shipml.errors import ConfigError

SECRET = "***"
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
# Every MLflow server shipml starts (`shipml ui`, `shipml server start`, the team's
# deployment) runs without MLflow 3's job runner: huey consumers for its GenAI jobs, which
# nothing in shipml submits. With it, `shipml ui` ran eleven processes and used 24 s of
# CPU in its first half minute; without, three and 5 s (benchmarks/mlflow_server.py). An
# environment that sets the variable keeps its own value.
SERVER_DEFAULTS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def server_environ(
    secrets: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of an MLflow server shipml starts: ``environ`` (this process's by
    default) over ``SERVER_DEFAULTS``, no usage telemetry, and ``secrets`` added."""
    given = os.environ if environ is None else environ
    return {**SERVER_DEFAULTS, **given, "MLFLOW_ENABLE_TELEMETRY": "false", **secrets}


@dataclass
class ServerPlan:
    """What ``shipml server start`` runs, and what it may print."""

    argv: list[str]
    url: str
    backend: str  # redacted
    artifacts: str
    env: dict[str, str] = field(default_factory=dict, repr=False)  # secrets: never printed


def _netloc(parts: SplitResult, password: str | None) -> str:
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username is None:
        return host
    user = parts.username + (f":{password}" if password is not None else "")
    return f"{user}@{host}"


def split_password(uri: str) -> tuple[str, str | None]:
    """``uri`` without its password, and the password, decoded (None when it has none)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri, None
    # A URI's password is percent-encoded; PGPASSWORD holds it as it is.
    return urlunsplit(parts._replace(netloc=_netloc(parts, None))), unquote(parts.password)


def redact(uri: str) -> str:
    """``uri`` with its password, if any, replaced by ``***``: safe to print."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=_netloc(parts, SECRET)))


def _backend(uri: str, root: Path) -> tuple[str, dict[str, str]]:
    if not uri:
        path = root / ".shipml" / "server" / "mlflow.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}", {}
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in (*POSTGRES_SCHEMES, "sqlite", "mysql", "mysql+pymysql", "mssql"):
        raise ConfigError(
            f"[server] backend_uri must be a database URI, not {redact(uri)[:80]!r}",
            hint="postgresql://USER@HOST:5432/DB (password in PGPASSWORD), or sqlite:///FILE",
        )
    env: dict[str, str] = {}
    if scheme in POSTGRES_SCHEMES:
        if find_spec("psycopg") is None:
            raise ConfigError(
                "a PostgreSQL backend needs psycopg, which is not installed",
                hint="pip install 'shipml[postgres]'",
            )
        # SQLAlchemy's default PostgreSQL driver is psycopg2; shipml installs psycopg 3.
        uri = "postgresql+psycopg://" + uri.split("://", 1)[1]
        uri, password = split_password(uri)
        if password is not None:
            env["PGPASSWORD"] = password
    return uri, env


def ui_command(
    tracking_uri: str, registry_uri: str, artifact_root: str, host: str, port: int
) -> tuple[list[str], dict[str, str]]:
    """``shipml ui``'s ``mlflow server`` command on a project's stores, and the variables
    to add to its environment: a database password goes in ``PGPASSWORD``, never on the
    command line (``ps`` shows it to every user of the machine)."""
    env: dict[str, str] = {}
    stores = []
    for uri in (tracking_uri, registry_uri):
        if uri.split("://", 1)[0].lower() in POSTGRES_SCHEMES:
            uri, extra = _backend(uri, Path("."))
            if env.get("PGPASSWORD", extra.get("PGPASSWORD")) != extra.get("PGPASSWORD"):
                raise ConfigError(
                    "the tracking and registry stores have different passwords: the UI "
                    "passes one, as PGPASSWORD",
                    hint="use one database user for both, or run `shipml server start`",
                )
            env.update(extra)
        stores.append(uri)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", stores[0]]
    command += ["--registry-store-uri", stores[1]]
    command += ["--default-artifact-root", artifact_root.rstrip("/") + "/mlruns"]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    return command, env


def _artifacts(dest: str, root: Path) -> str:
    if not dest:
        path = root / ".shipml" / "server" / "artifacts"
        path.mkdir(parents=True, exist_ok=True)
        return str(path)
    if dest.startswith("s3://"):
        if find_spec("boto3") is None:
            raise ConfigError(
                "artifacts in an S3 bucket need boto3, which is not installed",
                hint="pip install 'shipml[s3]'",
            )
        return dest
    if "://" in dest and not dest.startswith("file://"):
        return dest  # gs://, wasbs://...: MLflow says what it lacks
    return str(Path(dest.removeprefix("file://")).expanduser().resolve())


def plan_server(
    settings: ServerSection,
    root: Path,
    *,
    host: str | None = None,
    port: int | None = None,
) -> ServerPlan:
    """The ``mlflow server`` command for ``settings`` (files of the SQLite default go
    under ``root``); its environment additions hold the secrets."""
    host = host or settings.host
    port = settings.port if port is None else port
    backend, env = _backend(settings.backend_uri, root)
    artifacts = _artifacts(settings.artifacts, root)
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(settings.workers),
    ]
    shown = f"[{host}]" if ":" in host else host
    return ServerPlan(argv, f"http://{shown}:{port}", redact(backend), artifacts, env)
