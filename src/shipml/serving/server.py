"""Running the model server: build the app for a resolved package, start uvicorn.

What to serve is resolved above this layer (``shipml.project.serving``): the server gets
a package folder and never needs the registry or MLflow.

With several workers uvicorn imports the app in each process, so the spec travels in
the ``SHIPML_SERVE_SPEC`` environment variable (JSON) to ``app_from_environment``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from shipml.audit import AuditLog
from shipml.audit.database import is_url
from shipml.config import MonitorSection, TracingSection
from shipml.errors import AuditError
from shipml.loopback import LoopbackHosts, is_loopback
from shipml.serving.app import ModelServer
from shipml.serving.connection import ConnectionLimits, GuardedProtocol, uvicorn_options
from shipml.serving.predictor import Predictor
from shipml.serving.tracing import Tracing

SPEC_ENV = "SHIPML_SERVE_SPEC"


@dataclass(frozen=True)
class ServeSpec:
    """Everything a server process needs (plain data, so it can cross a process boundary)."""

    package: str
    name: str
    version: str = "1"
    trusted_types: list[str] = field(default_factory=list)
    max_body_bytes: int = 10 * 1024 * 1024
    max_buffered_bytes: int = 0  # 0: 8 × max_body_bytes
    max_batch_size: int = 64
    max_wait_ms: float = 0.0
    audit_path: str = ""  # empty: no audit log
    signing_key: str = ""
    checkpoint_dir: str = ""
    checkpoint_every: int = 10_000
    checkpoint_interval_s: float = 1.0
    key_fingerprint: str = ""  # the pinned key the server must sign with
    durability: str = "process"
    commit_window_ms: float = 0.0
    audit_inputs: bool = True
    image_digest: str = ""
    attestation_key: str = ""  # hex; empty: a remote gateway's variant is not believed
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    # [monitor] settings (MonitorSection as a dict): the live drift and quality metrics.
    monitor: dict[str, Any] = field(default_factory=dict)
    # [tracing] settings (TracingSection as a dict).
    tracing: dict[str, Any] = field(default_factory=dict)
    # The V2 gRPC service (serving/grpc.py, shipml[grpc]) on this port; None: no gRPC.
    grpc_port: int | None = None
    grpc_host: str = "127.0.0.1"
    grpc_reuse_port: bool = False  # several worker processes share the port
    grpc_grace_s: float = 10.0
    # Bound to loopback (serve sets it): requests must name it in Host (shipml/loopback.py).
    local_only: bool = False


def build_app(spec: ServeSpec) -> Any:
    """The server's ASGI app: a ModelServer, with its gRPC service when the spec has a
    gRPC port."""
    app = model_server(spec)
    if spec.grpc_port is None:
        return app
    from shipml.serving.grpc import GrpcService, WithGrpc

    service = GrpcService(
        app,
        host=spec.grpc_host,
        port=spec.grpc_port,
        max_message_bytes=spec.max_body_bytes,
        limits=spec.limits,
        reuse_port=spec.grpc_reuse_port,
        grace_s=spec.grpc_grace_s,
    )
    return WithGrpc(app, service)


def model_server(spec: ServeSpec) -> ModelServer:
    predictor = Predictor.load(
        Path(spec.package), name=spec.name, version=spec.version, trusted_types=spec.trusted_types
    )
    audit = open_audit(spec) if spec.audit_path else None
    return ModelServer(
        predictor,
        max_body_bytes=spec.max_body_bytes,
        max_buffered_bytes=spec.max_buffered_bytes,
        max_batch_size=spec.max_batch_size,
        max_wait_ms=spec.max_wait_ms,
        tracing=tracing_of(spec.tracing, "shipml-serve"),
        audit=audit,
        audit_inputs=spec.audit_inputs,
        image_digest=spec.image_digest,
        attestation_key=bytes.fromhex(spec.attestation_key),
        monitor=MonitorSection(**spec.monitor),
        loopback=LoopbackHosts(spec.limits.allowed_hosts) if spec.local_only else None,
    )


def tracing_of(settings: dict[str, Any], service: str) -> Tracing:
    """A Tracing from ``[tracing]`` settings (the OTEL_* variables win)."""
    section = TracingSection(**settings)
    return Tracing.configure(
        section.exporter,
        endpoint=section.endpoint,
        ratio=section.sampling_ratio,
        service=section.service_name or service,
    )


def open_audit(spec: ServeSpec) -> AuditLog:
    """The server's audit log; a setting that cannot work is an AuditError naming it."""
    key = Path(spec.signing_key) if spec.signing_key else None
    if key is not None and key.exists() and not key.is_file():
        raise AuditError(
            f"[audit] signing_key {key} is not a file",
            hint="point it at an Ed25519 PEM key, or at a path where shipml may create one",
        )
    try:
        return AuditLog(
            spec.audit_path if is_url(spec.audit_path) else Path(spec.audit_path),
            signing_key=key,
            checkpoint_dir=Path(spec.checkpoint_dir) if spec.checkpoint_dir else None,
            checkpoint_every=spec.checkpoint_every,
            checkpoint_interval_s=spec.checkpoint_interval_s,
            durability=spec.durability,
            commit_window_ms=spec.commit_window_ms,
            key_fingerprint=spec.key_fingerprint,
        )
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        raise AuditError(
            f"cannot open the audit log ({_audit_settings(spec)}): "
            f"{type(exc).__name__}: {str(exc)[:200]}",
            hint="check [audit] path, signing_key and checkpoint_dir in shipml.toml (the key "
            "must be an Ed25519 PEM private key; the folders must be writable)",
        ) from exc


def _audit_settings(spec: ServeSpec) -> str:
    path = spec.audit_path if not is_url(spec.audit_path) else spec.audit_path.split("@")[-1]
    return f"path {path}, signing_key {spec.signing_key}, checkpoint_dir {spec.checkpoint_dir}"


def app_from_environment() -> Any:
    data = json.loads(os.environ[SPEC_ENV])
    spec = ServeSpec(**{**data, "limits": ConnectionLimits(**data.get("limits", {}))})
    GuardedProtocol.limits = spec.limits  # this worker process's connections
    return build_app(spec)


def run(
    spec: ServeSpec,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    graceful_shutdown_s: float = 10.0,
    access_log: bool = False,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve until interrupted; on SIGTERM in-flight requests finish (up to the grace time).
    ``ready`` is called once the model has loaded, before the port opens (with several
    workers, once the package loaded here), so a command announces a server only when
    one will answer. On a loopback ``host`` it answers only loopback names (loopback.py)."""
    import gc

    import uvicorn

    spec = replace(spec, local_only=is_loopback(host))
    if spec.grpc_port is not None:  # a clear error now, not a failed start later
        from shipml.serving.grpc import port_free, require_grpc

        require_grpc()
        port_free(host, spec.grpc_port)
        spec = replace(
            spec, grpc_host=host, grpc_reuse_port=workers > 1, grpc_grace_s=graceful_shutdown_s
        )
    # Resolving a registry reference loads MLflow: millions of objects that never change.
    # Frozen, the collector stops walking them on every full pass while serving.
    gc.collect()
    gc.freeze()
    options: dict[str, Any] = {
        **uvicorn_options(spec.limits, access_log=access_log),
        "host": host,
        "port": port,
        "log_level": "info" if access_log else "warning",
        "access_log": access_log,
        "timeout_graceful_shutdown": graceful_shutdown_s,
        "lifespan": "on",
    }
    if workers > 1:
        # Each worker loads the package; load it here once first, so a package that cannot
        # be served is one error before any worker starts.
        Predictor.load(
            Path(spec.package),
            name=spec.name,
            version=spec.version,
            trusted_types=spec.trusted_types,
        )
        if ready is not None:
            ready()
        os.environ[SPEC_ENV] = json.dumps(asdict(spec))
        uvicorn.run(
            "shipml.serving.server:app_from_environment", factory=True, workers=workers, **options
        )
    else:
        app = build_app(spec)
        if ready is not None:
            ready()
        uvicorn.run(app, **options)
