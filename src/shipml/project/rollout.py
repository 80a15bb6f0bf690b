"""``shipml gateway`` and ``shipml rollout``: the gateway assembled from ``[rollout]``
and the command line, with the project's gatekeeper (the one promotion rule), and the
commands that watch and steer a running gateway over HTTP."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from shipml.errors import ConfigError, GateFailed, ShipmlError, TestingError
from shipml.loopback import LoopbackHosts, is_loopback
from shipml.project import promotion
from shipml.rollout import Closed, Gateway, TrafficPolicy, Variant
from shipml.tracking import Registry, parse_model_ref, registry_for, resolve_version

if TYPE_CHECKING:
    from shipml.config import ProjectConfig, RolloutSection

ALIAS = "champion"


class ProjectGates:
    """The gateway's gatekeeper in a project: the challenger's offline ``[gates]`` and the
    registry's ``champion``, through ``shipml.project.promotion`` only."""

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config
        self._registry: Registry | None = None  # kept: a held canary asks every interval

    def check(self, variant: Variant) -> str | None:
        if not variant.ref:
            return (
                f"{variant.name} has no registry version (give it as NAME=REF, or "
                "NAME=URL#NAME/VERSION), so its offline gates cannot be checked"
            )
        try:
            self._registry = self._registry or registry_for(self.config)
            result = promotion.check(self.config, variant.ref, alias=ALIAS, registry=self._registry)
        except ShipmlError as exc:
            return f"the offline gates of {variant.ref} cannot be checked: {exc.message}"
        if not result.unmet or result.previous == result.version:
            return None
        unmet = "; ".join(f"{g.name}: {g.value} (needs {g.bound})" for g in result.unmet)
        return f"the offline gates of {variant.ref} do not hold: {unmet}"

    def promote(self, variant: Variant, *, reason: str, force: bool, by: str) -> str | None:
        if not variant.ref:
            if force:
                return None  # nothing in the registry to move
            raise GateFailed(f"{variant.name} has no registry version to promote")
        try:
            done = promotion.promote(
                self.config, variant.ref, alias=ALIAS, force=force, reason=reason, by=by
            )
        except TestingError as exc:  # e.g. an override with the audit log off
            raise GateFailed(exc.message, hint=exc.hint) from exc
        return done.summary

    def restore(self, variant: Variant, *, replacing: Variant, reason: str, by: str) -> str | None:
        if not variant.ref or not replacing.ref:
            return None
        current = replacing.ref.rpartition("/")[2]
        done = promotion.promote(
            self.config, variant.ref, alias=ALIAS, reason=reason, by=by, restoring=current
        )
        return done.summary


def variant(config: ProjectConfig | None, spec: str, role: str) -> Variant:
    """``NAME=URL[#NAME/VERSION]`` of a running ``shipml serve`` (the fragment names its
    registry version), or ``NAME=REF`` (a package folder, ``NAME@ALIAS`` or
    ``NAME/VERSION``) to host that model in the gateway's process."""
    name, sep, target = spec.partition("=")
    if not sep or not name or not target:
        raise ConfigError(
            f"--{role} expects NAME=URL or NAME=REF, got {spec[:200]!r}",
            hint=f"for example --{role} v2=http://127.0.0.1:8081 or "
            f"--{role} v2=penguins@challenger",
        )
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        url = urlunsplit((*parts[:4], "")).rstrip("/")
        return Variant(name, url=url, ref=_version_of(config, parts.fragment, role))
    from shipml.project.serving import resolve, serve_spec
    from shipml.serving.server import build_app

    model = resolve(config, target)
    ref = model.ref if model.registered else ""
    return Variant(name, ref=ref, app=build_app(serve_spec(config, model)))


def _version_of(config: ProjectConfig | None, fragment: str, role: str) -> str:
    """``NAME/VERSION`` of a remote variant's ``#NAME/VERSION`` (or ``#NAME@ALIAS``)."""
    if not fragment:
        return ""
    parsed = parse_model_ref(fragment)
    if parsed.name is None:
        raise ConfigError(f"--{role}: #{fragment[:80]} names a folder, not a registry version")
    if parsed.version is not None:
        return f"{parsed.name}/{parsed.version}"
    if config is None:
        raise ConfigError(
            f"--{role}: #{fragment[:80]} is a registry reference, but there is no project here"
        )
    return resolve_version(config, parsed).ref


@dataclass
class GatewayOptions:
    """The command line of ``shipml gateway``; None (or empty) takes ``[rollout]``."""

    mode: str | None = None
    champion: str | None = None
    challengers: list[str] = field(default_factory=list)
    fraction: float | None = None
    weights: str | None = None
    sticky: str | None = None
    steps: str | None = None
    min_samples: int | None = None
    interval: float | None = None
    host: str | None = None
    port: int | None = None


@dataclass
class GatewayPlan:
    gateway: Gateway
    host: str
    port: int


def plan_gateway(config: ProjectConfig | None, options: GatewayOptions) -> GatewayPlan:
    """The gateway ``shipml gateway`` runs: policy, tokens, limits, audit log, gatekeeper."""
    from shipml.audit import open_log

    section = _section(config)
    o = options
    champion = o.champion or section.champion
    if not champion:
        raise ConfigError(
            "no champion given",
            hint="pass --champion NAME=URL|REF or set [rollout] champion in shipml.toml",
        )
    policy = TrafficPolicy(
        mode=o.mode or section.mode,
        champion=variant(config, champion, "champion"),
        challengers=[
            variant(config, c, "challenger") for c in (o.challengers or section.challengers)
        ],
        shadow_fraction=section.shadow_fraction if o.fraction is None else o.fraction,
        weights={**section.weights, **_weights(o.weights)},
        sticky=o.sticky or section.sticky or None,
        steps=_steps(o.steps) if o.steps else list(section.steps),
        min_samples=section.min_samples if o.min_samples is None else o.min_samples,
        interval_s=section.interval_s if o.interval is None else o.interval,
    )
    key = b""
    if config is not None:
        from shipml.project.serving import attestation_key

        key = attestation_key(config)
    gateway = Gateway(
        policy,
        audit=open_log(config) if config is not None and config.audit.enabled else None,
        admin_token=section.admin_token,
        feedback_token=section.feedback_token,
        gatekeeper=ProjectGates(config) if config is not None else Closed(),
        max_body_bytes=section.max_body_bytes,
        feedback_window_s=section.feedback_window_s,
        attestation_key=key,
        tracing=_tracing(config),
        loopback=LoopbackHosts(config.http.allowed_hosts if config is not None else ())
        if is_loopback(o.host or section.host)
        else None,
    )
    port = o.port if o.port is not None else section.port
    return GatewayPlan(gateway, o.host or section.host, port)


def _tracing(config: ProjectConfig | None) -> Any:
    """The gateway's tracer from ``[tracing]`` (the OTEL_* variables win)."""
    from shipml.serving.server import tracing_of

    settings = config.tracing.model_dump() if config is not None else {}
    return tracing_of(settings, "shipml-gateway")


def _section(config: ProjectConfig | None) -> RolloutSection:
    if config is not None:
        return config.rollout
    from shipml.config import RolloutSection

    env = os.environ.get
    return RolloutSection(
        admin_token=env("SHIPML_ROLLOUT_ADMIN_TOKEN", ""),
        feedback_token=env("SHIPML_ROLLOUT_FEEDBACK_TOKEN", ""),
    )


def _weights(text: str | None) -> dict[str, float]:
    parsed = {}
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        try:
            parsed[name] = float(value)
        except ValueError as exc:
            raise ConfigError(f"--weights expects NAME=NUMBER, got {item[:80]!r}") from exc
    return parsed


def _steps(text: str) -> list[float]:
    try:
        return [float(s) for s in text.split(",") if s]
    except ValueError as exc:
        raise ConfigError(f"--steps expects numbers like 5,25,50,100, got {text[:80]!r}") from exc


# -- steering a running gateway -------------------------------------------------------


def admin_token(config: ProjectConfig | None, given: str | None) -> str:
    """The token to send: the one given, ``SHIPML_ROLLOUT_ADMIN_TOKEN``, or the project's."""
    if given:
        return given
    return os.environ.get("SHIPML_ROLLOUT_ADMIN_TOKEN", "") or (
        config.rollout.admin_token if config is not None else ""
    )


def status(url: str) -> dict[str, Any]:
    """``GET /v1/rollout`` of the gateway at ``url``."""
    return _call(url.rstrip("/") + "/v1/rollout")


def promote_at(url: str, token: str, *, who: str, reason: str = "") -> dict[str, Any]:
    """Ask the gateway to promote its challenger; with ``reason``, past its gates (an
    override recorded with ``who`` and why)."""
    force = f"{who}: {reason}" if reason else ""
    return _call(url.rstrip("/") + "/v1/rollout/promote", "POST", token, force)


def rollback_at(url: str, token: str) -> dict[str, Any]:
    """Ask the gateway to send all traffic back to its champion."""
    return _call(url.rstrip("/") + "/v1/rollout/rollback", "POST", token)


def _call(url: str, method: str = "GET", token: str = "", force: str = "") -> dict[str, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if force:
        request.add_header("X-Shipml-Force", quote(force))  # headers are latin-1
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            detail = json.loads(raw or b"{}").get("error", exc.reason)
        except ValueError:
            detail = raw.decode("utf-8", "replace")[:300] or exc.reason
        hint = None
        if exc.code == 409 and url.endswith("/promote"):
            hint = "`shipml rollout promote --force --reason TEXT` overrides (recorded)"
        raise ShipmlError(f"the gateway answered {exc.code}: {detail}", hint=hint) from exc
    except OSError as exc:
        raise ShipmlError(
            f"cannot reach the gateway at {url}: {exc}",
            hint="start it with `shipml gateway`, or pass --gateway URL",
        ) from exc
