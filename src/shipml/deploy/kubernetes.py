"""The kubernetes target: an overlay applied to the current kube context with kubectl.

Kept small on purpose (no cluster runs in CI): server-side apply of the rendered overlay
(``--dry-run`` asks the API server to check it without persisting anything), then
`kubectl rollout status` of every Deployment and StatefulSet; `down` deletes the
overlay's objects.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.deploy.validation import kubectl
from shipml.errors import DeployError

Obj = dict[str, Any]
ROLLED_OUT = ("Deployment", "StatefulSet")


@dataclass
class ClusterDeployment:
    context: str
    applied: list[str]  # kubectl's lines: "deployment.apps/x serverside-applied"
    rollouts: list[str] = field(default_factory=list)
    dry_run: bool = False


def _kubectl(*args: str, timeout: float = 600) -> str:
    proc = subprocess.run([kubectl(), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise DeployError(
            f"kubectl {' '.join(args[:2])} failed: {proc.stderr.strip()}",
            hint="check the context (`kubectl config current-context`) and "
            "your permissions in its namespace",
        )
    return proc.stdout


def current_context() -> str:
    proc = subprocess.run(
        [kubectl(), "config", "current-context"], capture_output=True, text=True, timeout=30
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise DeployError(
            f"kubectl has no current context ({proc.stderr.strip() or 'none set'})",
            hint="point kubectl at a cluster (KUBECONFIG, `kubectl config use-context NAME`), "
            "or deploy on this machine with --target podman",
        )
    return proc.stdout.strip()


def apply(
    overlay: Path, objects: list[Obj], *, dry_run: bool = False, timeout_s: int = 300
) -> ClusterDeployment:
    """Server-side apply of ``overlay``; then wait for the rollouts of ``objects``."""
    context = current_context()
    args = ["apply", "--server-side", "--field-manager=shipml", "-k", str(overlay)]
    if dry_run:
        args.append("--dry-run=server")
    applied = _kubectl(*args).splitlines()
    result = ClusterDeployment(context, applied, dry_run=dry_run)
    if dry_run:
        return result
    for obj in objects:
        if obj["kind"] in ROLLED_OUT:
            ref = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
            out = _kubectl(
                "rollout",
                "status",
                ref,
                "-n",
                obj["metadata"]["namespace"],
                f"--timeout={timeout_s}s",
                timeout=timeout_s + 30,
            )
            result.rollouts.append(out.strip().splitlines()[-1] if out.strip() else ref)
    return result


def down(overlay: Path) -> list[str]:
    current_context()
    return _kubectl("delete", "--ignore-not-found", "-k", str(overlay)).splitlines()
