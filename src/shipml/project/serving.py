"""``shipml serve`` and ``shipml predict``: what to serve, resolved once, with the
project's settings; the server itself only ever sees a package folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipml.audit import prepare_key
from shipml.audit.database import is_url
from shipml.errors import ConfigError, ModelError
from shipml.serving.connection import ConnectionLimits
from shipml.serving.server import ServeSpec
from shipml.tracking import ResolvedModel, resolve_model

if TYPE_CHECKING:
    from shipml.config import ProjectConfig
    from shipml.serving.predictor import Predictor

log = logging.getLogger("shipml")


def resolve(config: ProjectConfig | None, ref: str) -> ResolvedModel:
    """The package ``ref`` names (a folder, ``NAME@ALIAS`` or ``NAME/VERSION``); a file
    is refused with the reason (a pickle is never loaded)."""
    path = Path(ref).expanduser()
    if path.is_file():
        from shipml.model import refuse_pickle

        refuse_pickle(path)
        raise ModelError(
            f"{ref[:200]} is a file; shipml serves model package folders or registry references",
            hint="give NAME@ALIAS, NAME/VERSION or a folder made by shipml.package_model",
        )
    return resolve_model(config, ref)


def serve_spec(config: ProjectConfig | None, ref: str | ResolvedModel) -> ServeSpec:
    """Everything a server process needs to serve ``ref`` under the project's
    ``[serving]``, ``[model]``, ``[audit]`` and ``[rollout] attestation_key``."""
    model = resolve(config, ref) if isinstance(ref, str) else ref
    if config is None:
        return ServeSpec(str(model.path), model.name, model.version)
    serving, audit = config.serving, config.audit
    settings: dict[str, Any] = {
        "trusted_types": list(config.model.trusted_types),
        "max_body_bytes": serving.max_body_bytes,
        "max_buffered_bytes": serving.max_buffered_bytes or 8 * serving.max_body_bytes,
        "max_batch_size": serving.max_batch_size,
        "max_wait_ms": serving.max_wait_ms,
        "attestation_key": attestation_key(config).hex(),
        "monitor": config.monitor.model_dump(),
        "tracing": config.tracing.model_dump(),
        "limits": ConnectionLimits.from_config(config),
    }
    if audit.enabled:
        settings.update(
            audit_path=audit.path if is_url(audit.path) else str(config.path(audit.path)),
            signing_key=str(config.path(audit.signing_key)),
            checkpoint_dir=str(config.path(audit.checkpoint_dir)),
            checkpoint_every=audit.checkpoint_every,
            checkpoint_interval_s=audit.checkpoint_interval_s,
            durability=audit.durability,
            commit_window_ms=audit.commit_window_ms,
            key_fingerprint=prepare_key(config),
            audit_inputs=audit.store_inputs,
            image_digest=audit.image_digest,
        )
    return ServeSpec(str(model.path), model.name, model.version, **settings)


def attestation_key(config: ProjectConfig) -> bytes:
    """The key the gateway and the project's servers share (``[rollout] attestation_key``),
    made if missing. Where it can be neither read nor made (a read-only folder), there is
    none: the server then records every request as ``direct``, and says so."""
    from shipml.attestation import load_key

    try:
        return load_key(config.path(config.rollout.attestation_key))
    except ConfigError as exc:
        log.warning("no variant attestation: %s (%s)", exc.message, exc.hint)
        return b""


@dataclass(frozen=True)
class ServePlan:
    """``shipml serve``: the spec and where to listen."""

    spec: ServeSpec
    host: str
    port: int
    workers: int
    graceful_shutdown_s: float


def plan_serve(
    config: ProjectConfig | None,
    ref: str,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    name: str | None = None,
    version: str | None = None,
    grpc_port: int | None = None,
) -> ServePlan:
    """What ``shipml serve REF`` runs; options given win over ``[serving]``. ``name`` and
    ``version`` rename a package folder (a serve image names its baked-in package so);
    ``grpc_port`` (or ``[serving] grpc_port``) also serves the V2 gRPC service."""
    spec = serve_spec(config, ref)
    if name or version:
        spec = replace(spec, name=name or spec.name, version=version or spec.version)
    serving = config.serving if config is not None else None
    grpc_port = grpc_port if grpc_port is not None else getattr(serving, "grpc_port", None)
    if grpc_port is not None:  # like the HTTP port, a setting of this command only
        spec = replace(spec, grpc_port=grpc_port)
    return ServePlan(
        spec,
        host or (serving.host if serving else "127.0.0.1"),
        port if port is not None else (serving.port if serving else 8080),
        workers or (serving.workers if serving else 1),
        serving.graceful_shutdown_s if serving else 10.0,
    )


def load_predictor(config: ProjectConfig | None, ref: str) -> Predictor:
    """The predictor of ``ref`` (``shipml predict``), with the project's trusted types."""
    from shipml.serving.predictor import Predictor

    model = resolve(config, ref)
    trusted = list(config.model.trusted_types) if config is not None else []
    return Predictor.load(model.path, name=model.name, version=model.version, trusted_types=trusted)
