"""The podman target: an environment's rendered objects on one machine, with
`podman kube play`, using images built locally.

Podman runs pods, not a cluster, so the objects are adapted before they are played
(and nothing else changes):

- each Deployment becomes one Pod named like its Service plus the environment
  (``penguins-champion-dev``: podman's names are global, not per namespace), on a
  podman network of the environment's own, where a pod's name resolves by DNS; the
  gateway's policy (its ConfigMap, renamed the same way) points at those names;
- the gateway's port is published on the host (``127.0.0.1:[deploy.ENV] host_port``);
  other containers publish nothing (podman 4 would publish a containerPort on the host
  under its own number), and their probes are resolved to port numbers;
- volumes are renamed ``<pod>-<volume>``: podman 4 makes an emptyDir a named volume,
  which pods would otherwise share; `down` removes them, and the ConfigMaps' volumes;
- kinds podman does not run (Services, autoscalers, budgets, network policies, Jobs,
  CronJobs, StatefulSets, monitoring objects) are left out and listed.

Podman 4 ignores readiness probes, so readiness is each container's own rendered
readiness probe, run inside it with ``podman exec``.

Names stay readable (``penguins-champion-dev`` is what one types after ``podman logs``)
and are global to the machine, so two checkouts of a project with the same name would
share them. Each pod and network is labelled with the project root it belongs to
(``io.shipml.root``: a short hash of the resolved root; ``io.shipml.root-path``: the root,
for messages): `apply` refuses to replace a pod or network of another root, and `down`
removes only this root's. A pod without the label (made by an older shipml) counts as
this root's only where this root's own record of the last apply (``podman-ENV.yaml``)
names it; a network without it is shared (podman keeps a network while a pod uses it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.deploy.kustomize import dump
from shipml.deploy.manifests import COMPONENT
from shipml.errors import DeployError

Obj = dict[str, Any]
PLAYED = ("ConfigMap", "Deployment")
ROOT_LABEL = "io.shipml.root"  # a short hash of the resolved project root
ROOT_PATH_LABEL = "io.shipml.root-path"  # that root, to name the owner in a message
PROBE = (
    "import sys, urllib.request\n"
    "try:\n"
    "    urllib.request.urlopen(sys.argv[1], timeout=2).read()\n"
    "except Exception as exc:\n"
    "    sys.exit(str(exc))\n"
)


@dataclass
class PodmanDeployment:
    env: str
    network: str
    manifest: Path  # what was played (and what `down` removes)
    pods: list[str]
    urls: dict[str, str]
    skipped: list[str] = field(default_factory=list)  # Kind/name podman does not run


@dataclass(frozen=True)
class Owner:
    """The project root a deploy belongs to, as podman labels carry it."""

    root: Path

    @property
    def key(self) -> str:
        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]

    @property
    def labels(self) -> dict[str, str]:
        return {ROOT_LABEL: self.key, ROOT_PATH_LABEL: str(self.root.resolve())}

    def owns(self, labels: dict[str, str], recorded: set[str], name: str) -> bool:
        """Whether a pod or network with ``labels`` is this root's; one without the label
        (an older shipml's) is, if this root's record of its last apply names it."""
        if ROOT_LABEL in labels:
            return labels[ROOT_LABEL] == self.key
        return name in recorded


def podman() -> str:
    path = shutil.which("podman")
    if path is None:
        raise DeployError(
            "podman is not installed",
            hint="install it (Debian: apt-get install podman runc), or deploy "
            "with --target kubernetes",
        )
    return path


def _run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([podman(), *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise DeployError(
            f"podman {args[0]} {args[1] if len(args) > 1 else ''} failed: "
            f"{detail[-1] if detail else proc.returncode}",
            hint="see `podman ps -a` and `podman logs NAME`",
        )
    return proc


def adapt(objects: list[Obj], env: str, host_port: int) -> tuple[list[Obj], list[str]]:
    """The objects podman plays (Deployments as Pods) and the ``Kind/name`` left out."""
    # Podman's names are global, not per namespace: every pod and ConfigMap gets the
    # environment as a suffix, and the gateway's policy is pointed at the renamed pods.
    names = {
        o["metadata"]["name"]: f"{o['metadata']['name']}-{env}"
        for o in objects
        if o["kind"] in PLAYED
    }
    played: list[Obj] = []
    skipped: list[str] = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind not in PLAYED:
            skipped.append(f"{kind}/{name}")
        elif kind == "ConfigMap":
            played.append(_config_map(obj, names))
        else:
            played.append(_pod(obj, names, host_port))
    return played, skipped


def _config_map(obj: Obj, names: dict[str, str]) -> Obj:
    """The ConfigMap renamed, the pods its texts address renamed too."""
    data = dict(obj["data"])
    for key, text in data.items():
        for old, new in names.items():
            text = text.replace(f"//{old}:", f"//{new}:")
        data[key] = text
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names[obj["metadata"]["name"]]},
        "data": data,
    }


def _pod(obj: Obj, names: dict[str, str], host_port: int) -> Obj:
    """A Deployment's pod template as a Pod: volumes renamed, probes on port numbers, and
    only the gateway's port published (on 127.0.0.1:``host_port``)."""
    pod_name = names[obj["metadata"]["name"]]
    template = json.loads(json.dumps(obj["spec"]["template"]))
    spec = template["spec"]
    spec["restartPolicy"] = "Always"
    gateway = template["metadata"]["labels"].get(COMPONENT) == "gateway"
    renamed = {v["name"]: f"{pod_name}-{v['name']}" for v in spec.get("volumes", [])}
    for volume in spec.get("volumes", []):
        volume["name"] = renamed[volume["name"]]
        if "configMap" in volume:
            volume["configMap"]["name"] = names[volume["configMap"]["name"]]
    for c in spec["containers"]:
        for mount in c.get("volumeMounts", []):
            mount["name"] = renamed[mount["name"]]
        numbers = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for key in ("readinessProbe", "livenessProbe"):
            get = (c.get(key) or {}).get("httpGet")
            if get and get["port"] in numbers:
                get["port"] = numbers[get["port"]]
        if gateway:
            for port in c.get("ports", []):
                port.update(hostPort=host_port, hostIP="127.0.0.1")
        else:
            c.pop("ports", None)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "labels": template["metadata"]["labels"]},
        "spec": spec,
    }


def _images(pods: list[Obj]) -> list[str]:
    return sorted({c["image"] for p in pods if p["kind"] == "Pod" for c in p["spec"]["containers"]})


def _ready(pod: Obj) -> str | None:
    """None if every container's readiness probe passes, else what failed."""
    for c in pod["spec"]["containers"]:
        probe = (c.get("readinessProbe") or {}).get("httpGet")
        if not probe:
            continue
        url = f"http://127.0.0.1:{probe['port']}{probe['path']}"
        name = f"{pod['metadata']['name']}-{c['name']}"
        proc = _run("exec", name, "python3", "-c", PROBE, url, check=False, timeout=30)
        if proc.returncode != 0:
            return f"{name}: {url}: {(proc.stderr or proc.stdout).strip()[-200:]}"
    return None


def _wait(pods: list[Obj], env: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting: str | None = "not checked"
    while time.monotonic() < deadline:
        waiting = next((w for w in map(_ready, pods) if w), None)
        if waiting is None:
            return
        time.sleep(1.0)
    raise DeployError(
        f"the {env} pods did not become ready within {timeout:.0f}s: {waiting}",
        hint=f"see `podman logs {str(waiting).split(':')[0]}`; remove them with "
        f"`shipml deploy down --env {env} --target podman`",
    )


def _pod_labels(names: list[str]) -> dict[str, dict[str, str]]:
    """The labels of those of the pods ``names`` that exist."""
    listed = json.loads(_run("pod", "ps", "--format", "json").stdout or "[]") or []
    return {p["Name"]: p.get("Labels") or {} for p in listed if p["Name"] in names}


def _network_labels(network: str) -> dict[str, str] | None:
    """The labels of ``network``, None if it does not exist."""
    proc = _run("network", "inspect", network, "--format", "{{json .Labels}}", check=False)
    if proc.returncode != 0:
        return None
    labels: dict[str, str] = json.loads(proc.stdout or "{}") or {}
    return labels


def _recorded(manifest: Path) -> list[Obj]:
    """What this root's last apply played (its record), empty if none."""
    if not manifest.is_file():
        return []
    import yaml

    return [d for d in yaml.safe_load_all(manifest.read_text(encoding="utf-8")) if d]


def _claim(pods: list[str], network: str, owner: Owner, manifest: Path, env: str) -> None:
    """Refuse to replace a pod or the network that another project root started: podman's
    names are global, and two checkouts of one project name the same pods."""
    recorded = {d["metadata"]["name"] for d in _recorded(manifest) if d["kind"] == "Pod"}
    found = {name: (labels, recorded) for name, labels in _pod_labels(pods).items()}
    net = _network_labels(network)
    if net is not None:  # one without the label is shared: podman keeps it while in use
        found[network] = (net, {network})
    for name, (labels, ours) in found.items():
        if owner.owns(labels, ours, name):
            continue
        kind = "network" if name == network else "pod"
        other = labels.get(ROOT_PATH_LABEL)
        if other:
            by = f"the project at {other}"
            fix = f"remove it from there (`shipml -C {other} deploy down --env {env}`)"
        else:
            by = f"an older shipml (no {ROOT_LABEL} label) and not recorded here"
            fix = f"if it is this project's, remove it (`podman {kind} rm -f {name}`)"
        raise DeployError(
            f"podman {kind} {name} already exists, started by {by}, not by this project "
            f"({owner.root.resolve()}): podman's names are global, and both projects "
            f"name their {env} pods alike",
            hint=f"{fix}; or give this project another [project] name, or deploy "
            "another environment (--env)",
        )


def apply(
    objects: list[Obj],
    env: str,
    project: str,
    state_dir: Path,
    *,
    root: Path,
    host_port: int,
    timeout: float = 120.0,
) -> PodmanDeployment:
    """Play ``objects`` (one environment, as rendered) and wait until every pod is ready;
    refused if a pod or network of the same name belongs to another project root."""
    played, skipped = adapt(objects, env, host_port)
    pods = [p for p in played if p["kind"] == "Pod"]
    owner = Owner(root)
    manifest = state_dir / f"podman-{env}.yaml"
    network = f"shipml-{project}-{env}"
    _claim([p["metadata"]["name"] for p in pods], network, owner, manifest, env)
    for image in _images(played):
        if _run("image", "exists", image, check=False).returncode != 0:
            raise DeployError(
                f"image {image} is not in podman's local storage",
                hint="build it first (`shipml build serve REF`), or pin the "
                "deployed version in [deploy]",
            )
    for pod in pods:
        pod["metadata"]["labels"] = {**pod["metadata"]["labels"], **owner.labels}
    if _run("network", "exists", network, check=False).returncode != 0:
        labels = [arg for k, v in owner.labels.items() for arg in ("--label", f"{k}={v}")]
        _run("network", "create", *labels, network)
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("---\n".join(dump(o) for o in played), encoding="utf-8")
    os.replace(tmp, manifest)
    _run("kube", "play", "--replace", "--network", network, str(manifest))
    _wait(pods, env, timeout)
    gateway = next((p for p in pods if p["metadata"]["labels"].get(COMPONENT) == "gateway"), None)
    urls = {"gateway": f"http://127.0.0.1:{host_port}"} if gateway else {}
    return PodmanDeployment(
        env, network, manifest, [p["metadata"]["name"] for p in pods], urls, skipped
    )


def down(
    env: str, project: str, state_dir: Path, *, root: Path
) -> tuple[list[str], list[tuple[str, str]]]:
    """Remove what ``apply`` started for ``env`` from this project root; returns the pods
    removed, and those left as (name, the root they belong to)."""
    manifest = state_dir / f"podman-{env}.yaml"
    if not manifest.is_file():
        raise DeployError(
            f"nothing was deployed to podman for {env} from this project",
            hint=f"deploy: `shipml deploy apply --env {env} --target podman`",
        )
    owner = Owner(root)
    pods = [d for d in _recorded(manifest) if d["kind"] == "Pod"]
    recorded = {d["metadata"]["name"] for d in pods}
    running = _pod_labels(sorted(recorded))
    removed: list[str] = []
    left: list[tuple[str, str]] = []
    for pod in pods:
        name = pod["metadata"]["name"]
        labels = running.get(name)
        if labels is not None and not owner.owns(labels, recorded, name):
            left.append((name, labels.get(ROOT_PATH_LABEL, "another project")))
            continue
        if labels is not None:
            _run("pod", "rm", "--force", name)
        for volume in pod["spec"].get("volumes", []):
            for gone in (volume["name"], volume.get("configMap", {}).get("name")):
                if gone:
                    _run("volume", "rm", "--force", gone, check=False)
        removed.append(name)
    network = f"shipml-{project}-{env}"
    labels = _network_labels(network)
    if labels is not None and owner.owns(labels, {network}, network):
        _run("network", "rm", network, check=False)  # refused while a pod uses it
    manifest.unlink()
    return removed, left
