"""``shipml deploy render``: plans → objects → strict validation → the kustomize tree.

Nothing is written unless every object of every environment passes the schema. After
writing, each overlay is rendered with `kubectl kustomize` (when kubectl is installed)
and must give back exactly the objects validated in Python.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipml.config import ProjectConfig
from shipml.deploy import kustomize, manifests, validation
from shipml.deploy.plan import ENVS, Plan, make_plan
from shipml.errors import DeployError
from shipml.monitor import grafana

Obj = dict[str, Any]


@dataclass
class Rendered:
    folder: Path
    plans: dict[str, Plan]
    objects: dict[str, list[Obj]]  # per env, as the overlay renders them
    kubernetes_version: str
    kustomize_checked: bool = False
    base: list[str] = field(default_factory=list)  # file names in the base
    monitoring: list[Path] = field(default_factory=list)  # alert rules, Grafana dashboard

    def overlay(self, env: str) -> Path:
        return self.folder / "overlays" / env


def environments(envs: list[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(envs or ENVS))
    unknown = [e for e in chosen if e not in ENVS]
    if unknown:
        raise DeployError(
            f"unknown environment(s) {', '.join(unknown)}", hint=f"use {', '.join(ENVS)}"
        )
    return chosen


def build_objects(plan: Plan) -> tuple[list[Obj], list[Obj]]:
    """The environment's objects without and with the overlay's namespace and label."""
    objects = manifests.build(plan)
    return objects, manifests.finalize(plan, objects)


def same_objects(a: list[Obj], b: list[Obj]) -> list[str]:
    """Keys of objects that differ between two renderings (empty: identical)."""
    left = {manifests.key(o): o for o in a}
    right = {manifests.key(o): o for o in b}
    return sorted(
        "/".join(k[1:]) for k in left.keys() | right.keys() if left.get(k) != right.get(k)
    )


MONITORING = "monitoring"
RULES_FILE = "alerts.rules.yaml"
DASHBOARD_FILE = "grafana-dashboard.json"


def write_monitoring(folder: Path, plan: Plan) -> list[Path]:
    """The alert rules as a plain Prometheus rules file and the Grafana dashboard as a
    file to import, beside the manifests (each written whole, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    group = manifests.rules_group(plan)
    files = {
        RULES_FILE: yaml.safe_dump({"groups": [group]}, sort_keys=False),
        DASHBOARD_FILE: grafana.dashboard_json(),
    }
    written = []
    for name, content in files.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(folder / name)
        written.append(folder / name)
    return written


def render(
    config: ProjectConfig,
    envs: list[str] | None = None,
    output: Path | None = None,
    *,
    check_kustomize: bool = True,
) -> Rendered:
    """Render the kustomize tree of ``envs`` (default: dev, staging, prod) into ``output``
    (default ``[deploy] output``, which must lie inside the project: ConfigError if not);
    raises DeployError before writing if anything fails the Kubernetes schema of
    ``[deploy] kubernetes_version``."""
    target = output or config.inside(config.deploy.output, "[deploy] output")
    version = validation.check_version(config.deploy.kubernetes_version)
    chosen = environments(envs)
    plans = {env: make_plan(config, env) for env in chosen}
    raw: dict[str, list[Obj]] = {}
    final: dict[str, list[Obj]] = {}
    for env, plan in plans.items():
        raw[env], final[env] = build_objects(plan)
        validation.validate(final[env], version, where=f" of {env}")
    tree = kustomize.split(raw, {e: manifests.namespace(p) for e, p in plans.items()})
    folder = kustomize.write(tree, target)
    result = Rendered(
        folder, plans, final, version, base=[kustomize.filename(o) for o in tree.base]
    )
    result.monitoring = write_monitoring(folder / MONITORING, next(iter(plans.values())))
    if check_kustomize and shutil.which("kubectl"):
        for env in chosen:
            differ = same_objects(validation.kustomize(result.overlay(env)), final[env])
            if differ:
                raise DeployError(
                    f"kubectl kustomize renders overlay {env} differently from shipml: "
                    f"{', '.join(differ)}",
                    hint="this is a bug in shipml; please report it with the tree attached",
                )
        result.kustomize_checked = True
    return result
