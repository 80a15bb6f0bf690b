"""``shipml deploy``: Kubernetes manifests rendered, validated, applied and removed."""

from __future__ import annotations

from pathlib import Path

import typer

from shipml.cli.output import project_config, stderr, stdout

app = typer.Typer(
    help="Kubernetes manifests: render, apply (podman or kubernetes), down.", no_args_is_help=True
)

ENV_HELP = "dev, staging or prod."
TARGET_HELP = "podman (this machine) or kubernetes (the current kube context)."


@app.command("render")
def render(
    env: list[str] = typer.Option([], "--env", "-e", help=f"{ENV_HELP} Default: all three."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="The tree's folder (default \\[deploy] output)."
    ),
) -> None:
    """Write the kustomize tree (base + one overlay per env), every object strictly
    validated against the Kubernetes schema of \\[deploy] kubernetes_version."""
    from shipml.deploy import render as render_tree

    result = render_tree(project_config(), env or None, output)
    for name, objects in result.objects.items():
        plan = result.plans[name]
        models = ", ".join(f"{v.name} {v.model}/{v.version}" for v in plan.variants)
        stdout.print(
            f"[green]{name}[/]: {len(objects)} objects, namespace {plan.namespace}, "
            f"{plan.settings.mode} ({models}) → {result.overlay(name)}",
            soft_wrap=True,
        )
    checked = (
        "and `kubectl kustomize` renders each overlay unchanged"
        if (result.kustomize_checked)
        else "(kubectl not found: overlays not rendered by kustomize)"
    )
    stdout.print(
        f"valid against Kubernetes {result.kubernetes_version} (strict) {checked}", soft_wrap=True
    )
    if result.monitoring:
        files = ", ".join(p.name for p in result.monitoring)
        stdout.print(f"monitoring: {files} → {result.monitoring[0].parent}", soft_wrap=True)


@app.command("apply")
def apply(
    env: str = typer.Option("dev", "--env", "-e", help=ENV_HELP),
    target: str = typer.Option("podman", "--target", "-t", help=TARGET_HELP),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="kubernetes: the API server checks, nothing is persisted."
    ),
    port: int | None = typer.Option(
        None,
        min=1,
        max=65535,
        help="podman: host port of the gateway (default \\[deploy.ENV] host_port).",
    ),
    timeout: float = typer.Option(120.0, help="Seconds to wait for readiness."),
) -> None:
    """Render one environment and start it; waits until it is ready, prints its URLs."""
    from shipml.deploy.target import apply as apply_env

    result = apply_env(
        project_config(), env, target, dry_run=dry_run, host_port=port, timeout_s=timeout
    )
    for line in result.status:
        stderr.print(line)
    if result.skipped:
        stderr.print(f"not run by {target}: {', '.join(result.skipped)}", soft_wrap=True)
    stdout.print(
        f"[green]{env} is up[/] on {target}"
        if not dry_run
        else f"[green]{env} passed the API server's dry run[/]"
    )
    for name, url in result.urls.items():
        stdout.print(f"{name}: {url}")


@app.command("down")
def down(
    env: str = typer.Option("dev", "--env", "-e", help=ENV_HELP),
    target: str = typer.Option("podman", "--target", "-t", help=TARGET_HELP),
) -> None:
    """Remove what `shipml deploy apply` started for this environment."""
    from shipml.deploy.target import down as down_env

    for line in down_env(project_config(), env, target):
        stderr.print(line)
    stdout.print(f"[green]{env} removed[/] from {target}")
