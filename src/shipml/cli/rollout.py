"""``shipml gateway`` and ``shipml rollout``: shadow, A/B and canary in front of model
servers, and the commands that watch and steer them."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from shipml.cli.output import JSON_HELP, print_json, stderr, stdout
from shipml.errors import ConfigError

app = typer.Typer(help="Watch and steer a running gateway.", no_args_is_help=True)


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
    port: int | None = typer.Option(None, min=0, max=65535, help="Port (\\[rollout] port)."),
) -> None:
    """Run the gateway in front of model servers. Every option defaults to \\[rollout] in
    shipml.toml (see docs/rollout.md). A remote variant may name its registry version
    (NAME=URL#NAME/VERSION) so that its offline gates can be checked."""
    import uvicorn

    from shipml.cli.serve import _config_or_none
    from shipml.project.rollout import GatewayOptions, plan_gateway
    from shipml.serving.connection import ConnectionLimits, uvicorn_options

    options = GatewayOptions(
        mode,
        champion,
        challenger,
        fraction,
        weights,
        sticky,
        steps,
        min_samples,
        interval,
        host,
        port,
    )
    config = _config_or_none()
    plan = plan_gateway(config, options)
    policy = plan.gateway.policy
    challengers = ", ".join(v.name for v in policy.challengers)
    where = f"http://{plan.host}:{plan.port}"
    stderr.print(
        f"gateway ({policy.mode}) on {where}: champion {policy.champion.name}"
        + (f", challengers {challengers}" if challengers else "")
    )
    uvicorn.run(
        plan.gateway,
        host=plan.host,
        port=plan.port,
        **uvicorn_options(ConnectionLimits.from_config(config)),  # deadlines, head-size cap
        log_level="warning",
        access_log=False,  # as the model server: no per-request log line to format
        lifespan="on",
    )


GATEWAY_OPT = typer.Option("http://127.0.0.1:8000", "--gateway", help="The gateway's URL.")


@app.command("status")
def status(
    gateway_url: str = GATEWAY_OPT,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Per-variant traffic, errors, latency, agreement and accuracy with confidence."""
    from shipml.project.rollout import status as gateway_status

    data = gateway_status(gateway_url)
    if as_json:
        print_json(data)
        return
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
    if data.get("held"):
        stdout.print(f"[yellow]held[/] at step {data['step']}: {escape(data['held'])}")
    for event in data["history"][-5:]:
        stdout.print(f"event {event['event']}: {escape(str(event.get('reason', '')))}")


def _token(token: str | None) -> str:
    from shipml.cli.serve import _config_or_none
    from shipml.project.rollout import admin_token

    return admin_token(None if token else _config_or_none(), token)


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

    from shipml.project.rollout import promote_at

    data = promote_at(
        gateway_url, _token(token), who=getpass.getuser(), reason=reason if force else ""
    )
    stdout.print(f"promoted: champion is now {data['champion']}")


@app.command("rollback")
def rollback(
    gateway_url: str = GATEWAY_OPT, token: str | None = typer.Option(None, help="Admin token.")
) -> None:
    """Send all traffic back to the champion now (recorded in the audit log)."""
    from shipml.project.rollout import rollback_at

    data = rollback_at(gateway_url, _token(token))
    stdout.print(f"rolled back: all traffic to {data['champion']}")
