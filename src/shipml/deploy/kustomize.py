"""The kustomize tree: a base with what every environment shares, one overlay per
environment with what differs, its namespace and its ``shipml.io/env`` label.

    deploy/
      .shipml-rendered               marks a tree shipml owns (and may replace)
      base/kustomization.yaml        resources: one file per object, KIND-NAME.yaml
      overlays/ENV/kustomization.yaml  namespace, labels, resources: ../../base + its own

The tree is written into a temporary folder beside the target and swapped in whole:
an interrupted render leaves the previous tree as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipml.deploy.manifests import ENV_LABEL, key
from shipml.errors import DeployError

Obj = dict[str, Any]
MARKER = ".shipml-rendered"
KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def filename(obj: Obj) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


@dataclass
class Tree:
    """Which objects go in the base and which in each overlay."""

    base: list[Obj] = field(default_factory=list)
    overlays: dict[str, list[Obj]] = field(default_factory=dict)
    namespaces: dict[str, Obj] = field(default_factory=dict)


def split(per_env: dict[str, list[Obj]], namespaces: dict[str, Obj]) -> Tree:
    """Objects identical in every environment go to the base; the rest to the overlays."""
    envs = list(per_env)
    first = {key(o): o for o in per_env[envs[0]]}
    shared = {
        k
        for k, obj in first.items()
        if all(any(key(o) == k and o == obj for o in per_env[e]) for e in envs[1:])
    }
    tree = Tree(namespaces=namespaces)
    tree.base = [o for o in per_env[envs[0]] if key(o) in shared]
    for env in envs:
        tree.overlays[env] = [o for o in per_env[env] if key(o) not in shared]
    return tree


def _kustomization(resources: list[str], **extra: Any) -> str:
    return dump({**KUSTOMIZATION, **extra, "resources": resources})


def _write_objects(folder: Path, objects: list[Obj]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for obj in objects:
        name = filename(obj)
        if name in names:
            raise DeployError(f"two rendered objects would share the file {name}")
        (folder / name).write_text(dump(obj), encoding="utf-8")
        names.append(name)
    return names


def write(tree: Tree, output: Path) -> Path:
    """Write the tree to ``output``, replacing a tree shipml rendered there before."""
    output = output.resolve()
    foreign = output.exists() and not (output / MARKER).is_file()
    if foreign and (output.is_file() or any(output.iterdir())):
        raise DeployError(
            f"{output} exists and was not rendered by shipml; it is left untouched",
            hint="choose another folder with --output (or [deploy] output), or remove it",
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        (tmp / MARKER).write_text(
            "Rendered by `shipml deploy render`; edits here are replaced on the next render.\n"
        )
        base = _write_objects(tmp / "base", tree.base)
        (tmp / "base" / "kustomization.yaml").write_text(_kustomization(base))
        for env, objects in tree.overlays.items():
            folder = tmp / "overlays" / env
            own = _write_objects(folder, [tree.namespaces[env], *objects])
            namespace = tree.namespaces[env]["metadata"]["name"]
            labels = [{"pairs": {ENV_LABEL: env}, "includeSelectors": False}]
            (folder / "kustomization.yaml").write_text(
                _kustomization(["../../base", *own], namespace=namespace, labels=labels)
            )
        old = None
        if output.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}-old-", dir=output.parent))
            os.replace(output, old / "tree")
        os.replace(tmp, output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output
