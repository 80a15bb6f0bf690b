"""``shipml gateway`` and ``shipml rollout``: shadow, A/B and canary in front of model
servers, and the commands that watch and steer them."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import typer
from rich.table import Table

from shipml.cli.output import project_config, stderr, stdout
from shipml.errors import ConfigError, ShipmlError

app = typer.Typer(help="Watch and steer a running gateway.", no_args_is_help=True)


def _variant(spec: str, role: str, config: Any) -> Any:
    """NAME=URL of a running `shipml serve`, or NAME=REF (a package folder or a registry
    reference) to host that model inside the gateway."""
    from shipml.rollout import Variant

    name, sep, target = spec.partition("=")
    if not sep or not name or not target:
        raise ConfigError(
            f"--{role} expects NAME=URL or NAME=REF, got {spec!r}",
            hint=f"for example --{role} v2=http://127.0.0.1:8081 or "
            f"--{role} v2=penguins@challenger",
        )
    if target.startswith(("http://", "https://")):
        return Variant(name, url=target.rstrip("/"))
    from shipml.serving.server import build_app, resolve_spec

    spec_ = resolve_spec(target, config)
    from shipml.tracking import parse_model_ref

    in_registry = parse_model_ref(target).path is None  # a folder has no registry version
    ref = f"{spec_.name}/{spec_.version}" if in_registry else ""
    return Variant(name, ref=ref, app=build_app(spec_))


def gateway(
    mode: str | None = typer.Option(None, help="single, shadow, ab or canary."),
    champion: str | None = typer.Option(
        None,
        help="NAME=URL of the champion's model server, or NAME=REF to host it in the "
        "gateway (REF: a package folder, NAME@ALIAS or NAME/VERSION).",
    ),
    challenger: list[str] = typer.Option(
        [], help="NAME=URL or NAME=REF of a challenger (repeatable)."
    ),
    fraction: float | None = typer.Option(None, help="shadow: share of requests mirrored."),
    weights: str | None = typer.Option(None, help="ab: NAME=WEIGHT,... (default: equal)."),
    sticky: str | None = typer.Option(None, help="header:NAME or field:NAME for sticky A/B."),
    steps: str | None = typer.Option(None, help="canary: challenger weight per step, 5,25,..."),
    min_samples: int | None = typer.Option(None, help="canary: labels per variant to decide."),
    interval: float | None = typer.Option(None, help="canary: seconds between analyses."),
    host: str | None = typer.Option(None, help="Interface (default \\[rollout] host)."),
    port: int | None = typer.Option(None, help="Port (default \\[rollout] port, 8000)."),
) -> None:
    """Run the gateway in front of model servers. Every option defaults to \\[rollout] in
    shipml.toml (see docs/rollout.md)."""
    import uvicorn

    from shipml.audit import open_log
    from shipml.cli.serve import _config_or_none
    from shipml.config import RolloutSection
    from shipml.rollout import Gateway, TrafficPolicy
    from shipml.serving.connection import ConnectionLimits, uvicorn_options

    config: Any = _config_or_none()
    section = (
        config.rollout
        if config is not None
        else RolloutSection(admin_token=os.environ.get("SHIPML_ROLLOUT_ADMIN_TOKEN", ""))
    )
    champion = champion or section.champion
    if not champion:
        raise ConfigError(
            "no champion given",
            hint="pass --champion NAME=URL|REF or set [rollout] champion in shipml.toml",
        )
    parsed_weights = dict(section.weights)
    for item in filter(None, (weights or "").split(",")):
        name, _, value = item.partition("=")
        try:
            parsed_weights[name] = float(value)
        except ValueError as exc:
            raise ConfigError(f"--weights expects NAME=NUMBER, got {item!r}") from exc
    step_list = list(section.steps)
    if steps:
        try:
            step_list = [float(s) for s in steps.split(",") if s]
        except ValueError as exc:
            raise ConfigError(f"--steps expects numbers like 5,25,50,100, got {steps!r}") from exc
    mode = mode or section.mode
    policy = TrafficPolicy(
        mode=mode,
        champion=_variant(champion, "champion", config),
        challengers=[
            _variant(c, "challenger", config) for c in (challenger or section.challengers)
        ],
        shadow_fraction=section.shadow_fraction if fraction is None else fraction,
        weights=parsed_weights,
        sticky=sticky or section.sticky or None,
        steps=step_list,
        min_samples=section.min_samples if min_samples is None else min_samples,
        interval_s=section.interval_s if interval is None else interval,
    )
    audit = open_log(config) if config is not None and config.audit.enabled else None
    host = host or section.host
    port = port if port is not None else section.port
    stderr.print(
        f"gateway ({mode}) on http://{host}:{port}: champion {policy.champion.name}"
        + (
            f", challengers {', '.join(v.name for v in policy.challengers)}"
            if policy.challengers
            else ""
        )
    )
    on_promote = _registry_promoter(config) if config is not None else None
    uvicorn.run(
        Gateway(
            policy,
            audit=audit,
            admin_token=section.admin_token,
            on_promote=on_promote,
            tracing=_tracing(config),
        ),
        host=host,
        port=port,
        **uvicorn_options(ConnectionLimits.from_config(config)),  # deadlines, head-size cap
        log_level="warning",
        lifespan="on",
    )


def _registry_promoter(config: Any) -> Any:
    """After the gateway promotes a variant whose registry version it knows, point the
    registry's champion alias at it."""
    from shipml.tracking import Registry, tracker_for

    def promote(ref: str) -> str:
        name, _, version = ref.partition("/")
        Registry(tracker_for(config)).set_alias(name, version, "champion")
        return f"{name}@champion -> version {version}"

    return promote


def _call(url: str, method: str = "GET", token: str = "", force: str = "") -> dict[str, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if force:
        request.add_header("X-Shipml-Force", quote(force))  # headers are latin-1
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            detail = json.loads(raw or b"{}").get("error", exc.reason)
        except ValueError:
            detail = raw.decode("utf-8", "replace")[:300] or exc.reason
        raise ShipmlError(f"the gateway answered {exc.code}: {detail}") from exc
    except OSError as exc:
        raise ShipmlError(
            f"cannot reach the gateway at {url}: {exc}",
            hint="start it with `shipml gateway`, or pass --gateway URL",
        ) from exc


GATEWAY_OPT = typer.Option("http://127.0.0.1:8000", "--gateway", help="The gateway's URL.")


@app.command("status")
def status(gateway_url: str = GATEWAY_OPT) -> None:
    """Per-variant traffic, errors, latency, agreement and accuracy with confidence."""
    data = _call(gateway_url.rstrip("/") + "/v1/rollout")
    stdout.print(
        f"mode [bold]{data['mode']}[/] · state {data['state']} · champion "
        f"{data['champion']} · weights {data['weights']}"
    )
    table = Table(
        "variant", "requests", "errors", "p99 ms", "labelled", "accuracy", "95% CI", "p vs champion"
    )
    for name, row in data["analysis"]["variants"].items():
        ci = row.get("accuracy_ci95")
        table.add_row(
            name,
            str(row["requests"]),
            f"{row['error_rate']:.2%}",
            f"{row['p99_ms']:.1f}" if row["p99_ms"] is not None else "-",
            str(row["labelled"]),
            f"{row['accuracy']:.3f}" if row["accuracy"] is not None else "-",
            f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "-",
            f"{row['p_value_vs_champion']:.3g}" if "p_value_vs_champion" in row else "-",
        )
    stdout.print(table)
    for name, sh in data["analysis"]["shadow"].items():
        agree = sh["agreement"]
        stdout.print(
            f"shadow {name}: {sh['compared']} compared, agreement {agree:.2%}"
            if agree is not None
            else f"shadow {name}: none compared"
        )
    if data.get("shadow"):
        stdout.print(f"mirroring: {data['shadow']}")
    for event in data["history"][-5:]:
        stdout.print(f"event {event['event']}: {event.get('reason', '')}")


def _token(token: str | None) -> str:
    if token:
        return token
    env = os.environ.get("SHIPML_ROLLOUT_ADMIN_TOKEN", "")
    if env:
        return env
    try:
        return str(project_config().rollout.admin_token)
    except ConfigError:
        return ""


@app.command("promote")
def promote(
    gateway_url: str = GATEWAY_OPT,
    token: str | None = typer.Option(None, help="Admin token."),
    force: bool = typer.Option(False, help="Promote even if the quality gate fails."),
    reason: str = typer.Option("", help="Why (required with --force)."),
) -> None:
    """Make the challenger the champion if its accuracy holds up (recorded in the audit
    log); --force --reason TEXT overrides the gate and records who and why."""
    if force and not reason:
        raise ConfigError("--force needs --reason TEXT", hint="say why the gate is overridden")
    import getpass

    who = getpass.getuser()
    data = _call(
        gateway_url.rstrip("/") + "/v1/rollout/promote",
        "POST",
        _token(token),
        force=f"{who}: {reason}" if force else "",
    )
    stdout.print(f"promoted: champion is now {data['champion']}")


@app.command("rollback")
def rollback(
    gateway_url: str = GATEWAY_OPT, token: str | None = typer.Option(None, help="Admin token.")
) -> None:
    """Send all traffic back to the champion now (recorded in the audit log)."""
    data = _call(gateway_url.rstrip("/") + "/v1/rollout/rollback", "POST", _token(token))
    stdout.print(f"rolled back: all traffic to {data['champion']}")


def _tracing(config: Any) -> Any:
    """The gateway's tracer from ``[tracing]`` (the OTEL_* variables win)."""
    from shipml.serving.server import tracing_of

    settings = config.tracing.model_dump() if config is not None else {}
    return tracing_of(settings, "shipml-gateway")
