"""The MLflow-backed tracking store: experiments, runs, params, metrics, dataset inputs.

Uses ``MlflowClient`` with explicit URIs (no global MLflow state), so several
projects can be tracked from one process. Embedded default: SQLite plus a local
artifact folder; team mode: any MLflow tracking URI (PostgreSQL, a server).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import unquote

from shipml.errors import ShipmlError, TrackingError
from shipml.files import exclusive_lock

# The dataset digest column in MLflow's store holds 36 characters; the full
# sha256 travels in the dataset's profile and in a run tag.
MLFLOW_DIGEST_CHARS = 32

_SCHEMA_TYPES = {"bool": "boolean", "int": "long", "float": "double", "datetime": "datetime"}


def no_telemetry() -> None:
    """MLflow's usage telemetry off unless the user chose otherwise: called just before
    MLflow is imported (it reads these when imported), never when this module is."""
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


def quiet_mlflow() -> None:
    """MLflow chatters on stderr at INFO (database migrations) and sets its own log level
    when imported; lower it after that to keep the CLI clean."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


_REFUSED = (
    "MLflow refuses that name or value, not the store: a param, metric or tag name is at "
    "most 250 characters of letters, digits, spaces and _ - . : /; rename it"
)


def store_call(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """MLflow's own errors (a name it refuses, a store it cannot reach) as a TrackingError
    naming the call, instead of a traceback (for the methods of Tracker and Registry)."""

    @functools.wraps(method)
    def call(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except ShipmlError:
            raise
        except Exception as exc:
            uri = getattr(self, "tracking_uri", None) or getattr(
                getattr(self, "tracker", None), "tracking_uri", "?"
            )
            raise TrackingError(
                f"the MLflow store at {_public(str(uri))} failed in {method.__name__}: "
                f"{type(exc).__name__}: {scrub(str(exc), str(uri))[:300]}",
                hint=_REFUSED
                if getattr(exc, "error_code", None) == "INVALID_PARAMETER_VALUE"
                else "check [tracking] uri (and that the server is up); `shipml --debug "
                "...` shows MLflow's traceback",
            ) from exc

    return call


def _public(uri: str) -> str:
    """A URI without its password (user:password@host -> user@host); the host is what
    follows the last ``@`` (a password may hold one)."""
    scheme, sep, rest = uri.partition("://")
    netloc, slash, path = rest.partition("/")
    if sep and "@" in netloc:
        auth, _, host = netloc.rpartition("@")
        return f"{scheme}://{auth.split(':', 1)[0]}@{host}{slash}{path}"
    return uri


_USERINFO = re.compile(r"(://[^/\s:@]*):[^/\s]*@")


# Secrets MLflow, its database drivers and its artifact stores read from the environment.
_SECRET_VARIABLES = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "PGPASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
)


def scrub(text: str, uri: str) -> str:
    """``text`` (an error from MLflow, which quotes the URLs it calls) without the password
    of ``uri``, of any ``user:password@`` in it, or of a secret MLflow reads from the
    environment (``MLFLOW_TRACKING_PASSWORD``, ``PGPASSWORD``, ...)."""
    secrets = {os.environ.get(name, "") for name in _SECRET_VARIABLES}
    _, sep, rest = uri.partition("://")
    auth = rest.partition("/")[0].rpartition("@")[0] if sep else ""
    if ":" in auth:
        password = auth.split(":", 1)[1]
        secrets |= {password, unquote(password), *password.split("@")}
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _USERINFO.sub(r"\1:***@", text)


def http_timeout(timeout_s: float) -> None:
    """MLflow's HTTP calls (a tracking server) give up after ``timeout_s`` seconds, without
    retries: an unreachable server is an error within the timeout, not after minutes."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, int(timeout_s)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"


def _file_uri(path: str) -> str:
    return path if "://" in path else Path(path).resolve().as_uri()


class Tracker:
    """One project's view of MLflow: its experiment, runs and registry.

    ``protected_aliases`` (``[gates] protect``) are the aliases the project's registry
    refuses to move except through the promotion gates (see ``tracking.registry``)."""

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str,
        experiment: str,
        artifact_root: str,
        timeout_s: float = 5.0,
        protected_aliases: tuple[str, ...] | list[str] = ("champion",),
    ) -> None:
        no_telemetry()
        from mlflow import MlflowClient

        quiet_mlflow()
        http_timeout(timeout_s)
        databases = sorted(
            Path(uri[len("sqlite:///") :])
            for uri in {tracking_uri, registry_uri}
            if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:"
        )
        for db in databases:
            db.parent.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self.protected_aliases = tuple(protected_aliases)
        try:
            # Opening a new SQLite store creates its tables: two commands doing it at once
            # collide ("table ... already exists"), so they take turns.
            with contextlib.ExitStack() as held:
                for db in databases:
                    held.enter_context(exclusive_lock(db.with_name(db.name + ".lock")))
                self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        except Exception as exc:  # MLflow raises assorted types for a bad URI
            raise TrackingError(
                f"cannot open the MLflow store at {_public(tracking_uri)}: "
                f"{scrub(str(exc), tracking_uri)[:300]}",
                hint="check [tracking] uri in shipml.toml or SHIPML_TRACKING_URI",
            ) from exc
        self._experiment_id: str | None = None

    # -- experiments and runs --------------------------------------------------
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            try:
                self._experiment_id = self._find_or_create_experiment()
            except Exception as exc:
                raise TrackingError(
                    f"cannot reach the MLflow store at {_public(self.tracking_uri)}: "
                    f"{type(exc).__name__}: {scrub(str(exc), self.tracking_uri)[:300]}",
                    hint="check [tracking] uri in shipml.toml; for a server, that it is up",
                ) from exc
        return self._experiment_id

    def _find_or_create_experiment(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        location = _file_uri(self.artifact_root.rstrip("/") + "/mlruns")
        try:
            return str(self.client.create_experiment(self.experiment, artifact_location=location))
        except Exception:
            # Another command created it meanwhile (two first runs at once): use theirs.
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return str(exp.experiment_id)

    @store_call
    def start_run(self, name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id(), run_name=name, tags=tags)
        return str(run.info.run_id)

    @store_call
    def end_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status, end_time=int(time.time() * 1000))

    @store_call
    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [
            Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in params.items()
        ]
        if items:
            self.client.log_batch(run_id, params=items)

    @store_call
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if items:
            self.client.log_batch(run_id, metrics=items)

    @store_call
    def log_batch(self, run_id: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
        """Metrics and tags in one write (one transaction on a SQL store)."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    @store_call
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @store_call
    def log_artifacts(self, run_id: str, local_dir: Path, path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(local_dir), path)

    @store_call
    def log_text(self, run_id: str, text: str, file: str) -> None:
        self.client.log_text(run_id, text, file)

    @store_call
    def artifact_uri(self, run_id: str) -> str:
        return str(self.client.get_run(run_id).info.artifact_uri)

    @store_call
    def log_dataset(
        self,
        run_id: str,
        *,
        name: str,
        digest: str,
        source: str,
        schema: list[dict[str, Any]],
        rows: int,
        context: str = "training",
        version: int | None = None,
    ) -> None:
        """Record a snapshot as an MLflow dataset input of the run (full digest in the profile)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        colspec = [
            {
                "name": c["name"],
                "type": _SCHEMA_TYPES.get(c["type"], "string"),
                "required": not c["nullable"],
            }
            for c in schema
        ]
        profile = {"sha256": digest, "num_rows": rows, "digest_format": "shipml-table-v1"}
        if version is not None:
            profile["version"] = version
        dataset = Dataset(
            name=name,
            digest=digest[:MLFLOW_DIGEST_CHARS],
            source_type="shipml-snapshot",
            source=json.dumps({"uri": source}),
            schema=json.dumps({"mlflow_colspec": colspec}),
            profile=json.dumps(profile),
        )
        tags = [InputTag("mlflow.data.context", context)]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])

    @store_call
    def get_run(self, run_id: str) -> Any:
        return self.client.get_run(run_id)


def run_metrics(run: Any) -> dict[str, float]:
    """A run's metrics as logged: MLflow's SQL store keeps infinity as the largest finite
    float (1.8e308), which would show as a number no step computed."""
    import sys

    largest = sys.float_info.max
    return {
        k: float(v) if abs(v) < largest else math.copysign(math.inf, v)
        for k, v in run.data.metrics.items()
    }


def tracker_for(config: Any) -> Tracker:
    """The tracker of a project (``config`` is a ``ProjectConfig``)."""
    return Tracker(
        config.tracking_uri,
        config.registry_uri,
        config.experiment_name,
        config.artifact_root,
        protected_aliases=tuple(config.gates.protect),
        timeout_s=getattr(config.tracking, "timeout_s", 5.0),
    )
