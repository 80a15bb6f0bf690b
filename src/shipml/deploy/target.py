"""``shipml deploy apply`` and ``down``: one environment, rendered and validated afresh,
run by a target: ``podman`` (this machine) or ``kubernetes`` (the current kube context).

The environment is rendered into ``.shipml/deploy/ENV/`` (a tree of its own, so the
project's ``deploy/`` tree is never changed by an apply), through the same strict
validation as `shipml deploy render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shipml.config import ProjectConfig
from shipml.deploy.render import render
from shipml.errors import DeployError

TARGETS = ("podman", "kubernetes")


@dataclass
class Applied:
    env: str
    target: str
    urls: dict[str, str] = field(default_factory=dict)
    status: list[str] = field(default_factory=list)  # one line per object or rollout
    skipped: list[str] = field(default_factory=list)


def _state(config: ProjectConfig) -> Path:
    return config.path(".shipml/deploy")


def _check(target: str) -> None:
    if target not in TARGETS:
        raise DeployError(f"unknown target {target!r}", hint=f"use {' or '.join(TARGETS)}")


def apply(
    config: ProjectConfig,
    env: str,
    target: str,
    *,
    dry_run: bool = False,
    host_port: int | None = None,
    timeout_s: float = 120.0,
) -> Applied:
    """Render ``env``, then start it on ``target`` and wait until it is ready."""
    _check(target)
    rendered = render(config, [env], _state(config) / env)
    objects = rendered.objects[env]
    if target == "podman":
        if dry_run:
            raise DeployError(
                "--dry-run needs an API server to check against",
                hint="use it with --target kubernetes",
            )
        from shipml.deploy import podman

        port = host_port or config.deploy.env(env).host_port
        done = podman.apply(
            objects,
            env,
            rendered.plans[env].project,
            _state(config),
            root=config.root,
            host_port=port,
            timeout=timeout_s,
        )
        return Applied(env, target, done.urls, [f"pod {p} ready" for p in done.pods], done.skipped)
    from shipml.deploy import kubernetes

    cluster = kubernetes.apply(
        rendered.overlay(env), objects, dry_run=dry_run, timeout_s=int(timeout_s)
    )
    head = f"context {cluster.context}" + (" (dry run: nothing persisted)" if dry_run else "")
    return Applied(env, target, {}, [head, *cluster.applied, *cluster.rollouts])


def down(config: ProjectConfig, env: str, target: str) -> list[str]:
    """Remove what ``apply`` started for ``env`` on ``target`` (on podman: only what this
    project root started, never a pod of the same name another checkout runs)."""
    _check(target)
    if target == "podman":
        from shipml.deploy import podman

        project = render_project(config)
        removed, left = podman.down(env, project, _state(config), root=config.root)
        return [f"pod {p} removed" for p in removed] + [
            f"pod {p} left running: it belongs to {owner}, not to this project" for p, owner in left
        ]
    from shipml.deploy import kubernetes

    overlay = _state(config) / env / "overlays" / env
    if not overlay.is_dir():
        raise DeployError(
            f"nothing was applied for {env} from this project",
            hint=f"apply it first: `shipml deploy apply --env {env}`",
        )
    return kubernetes.down(overlay)


def render_project(config: ProjectConfig) -> str:
    from shipml.deploy.plan import dns_name

    return dns_name(config.project.name, "the project name")
