"""Strict schema validation of rendered objects, and `kubectl kustomize` of a tree.

Built-in kinds are checked with kubernetes-validate against the OpenAPI schema of the
configured Kubernetes version, in strict mode: an unknown field is an error, as the API
server's strict field validation would make it. The Prometheus Operator's kinds have no
schema there; they are checked against the schema below, which is strict too and takes
``metadata`` and label selectors from the same Kubernetes definitions.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml.errors import DeployError

Obj = dict[str, Any]
DEFS = "/api/_definitions.json#/$defs/"
META = {"$ref": DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
SELECTOR = {"$ref": DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}


def _strict(properties: dict[str, Any], required: list[str] | None = None) -> Obj:
    out: Obj = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


_STR = {"type": "string"}
_STR_MAP = {"type": "object", "additionalProperties": _STR}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)(ms|s|m|h|d|w|y))+)$"}


def _crd(kind: str, spec: Obj) -> Obj:
    return {
        "$id": f"https://kubernetes.io/api/{kind.lower()}-monitoring-v1.json",
        **_strict(
            {
                "apiVersion": {"enum": ["monitoring.coreos.com/v1"]},
                "kind": {"enum": [kind]},
                "metadata": META,
                "spec": spec,
            },
            ["apiVersion", "kind", "metadata", "spec"],
        ),
    }


# The fields of monitoring.coreos.com/v1 that shipml writes (a subset of the operator's
# API; anything else is refused, so a typo cannot slip through).
CRD_SCHEMAS: dict[str, Obj] = {
    "ServiceMonitor": _crd(
        "ServiceMonitor",
        _strict(
            {
                "selector": SELECTOR,
                "namespaceSelector": _strict(
                    {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _STR}}
                ),
                "jobLabel": _STR,
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": _strict(
                        {
                            "port": _STR,
                            "path": _STR,
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "scheme": {"enum": ["http", "https"]},
                        }
                    ),
                },
            },
            ["selector", "endpoints"],
        ),
    ),
    "PrometheusRule": _crd(
        "PrometheusRule",
        _strict(
            {
                "groups": {
                    "type": "array",
                    "items": _strict(
                        {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    **_strict(
                                        {
                                            "alert": _STR,
                                            "record": _STR,
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": _DURATION,
                                            "labels": _STR_MAP,
                                            "annotations": _STR_MAP,
                                        },
                                        ["expr"],
                                    ),
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                },
                            },
                        },
                        ["name", "rules"],
                    ),
                },
            },
            ["groups"],
        ),
    ),
}


@dataclass(frozen=True)
class Problem:
    obj: str  # Kind/name
    where: str  # the field path
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.where or '(top)'}: {self.message}"


def _crd_problems(obj: Obj, version: str) -> list[Problem]:
    import jsonschema
    import referencing
    from kubernetes_validate import utils
    from referencing.jsonschema import DRAFT202012

    schema = CRD_SCHEMAS[obj["kind"]]
    versions = [
        v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(version)
    ]
    defs = utils.schema_contents(
        f"kubernetes-json-schema/v{versions[-1]}-local-strict/_definitions.json", version
    )
    registry = referencing.Registry().with_resources(
        [(r["$id"], DRAFT202012.create_resource(r)) for r in (schema, defs)]
    )
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [
        Problem(
            f"{obj['kind']}/{obj['metadata'].get('name')}",
            ".".join(str(p) for p in e.absolute_path),
            e.message,
        )
        for e in validator.iter_errors(obj)
    ]


def check_version(version: str) -> str:
    """The Kubernetes version if kubernetes-validate has its schema, else a DeployError."""
    from kubernetes_validate import utils

    known = utils.all_versions()
    mm = utils.major_minor(version.removeprefix("v"))
    if not any(utils.major_minor(v) == mm for v in known):
        raise DeployError(
            f"[deploy] kubernetes_version {version!r} has no schema in kubernetes-validate",
            hint=f"use one of {utils.major_minor(known[0])} to {utils.major_minor(known[-1])}",
        )
    return mm


def problems(objects: list[Obj], version: str) -> list[Problem]:
    """Everything wrong with ``objects`` under Kubernetes ``version``, strictly."""
    import kubernetes_validate
    from kubernetes_validate import utils

    check_version(version)
    found: list[Problem] = []
    for obj in objects:
        label = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        if obj.get("kind") in CRD_SCHEMAS:
            found += _crd_problems(obj, version)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except utils.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            found.append(Problem(label, path, exc.message))
        except utils.SchemaNotFoundError as exc:
            found.append(Problem(label, "apiVersion", exc.message))
    return found


def validate(objects: list[Obj], version: str, where: str = "") -> None:
    """Raise a DeployError naming every problem if any object fails the schema."""
    found = problems(objects, version)
    if found:
        shown = "\n  ".join(str(p) for p in found[:10])
        more = f"\n  ... and {len(found) - 10} more" if len(found) > 10 else ""
        raise DeployError(
            f"{len(found)} rendered object(s){where} fail the Kubernetes {version} schema "
            f"(strict):\n  {shown}{more}",
            hint="nothing was written; fix the [deploy] settings named above (or report a "
            "bug if they are shipml's own fields)",
        )


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise DeployError(
            "kubectl is not installed",
            hint="install kubectl (the client is enough to render; applying needs a cluster)",
        )
    return path


def kustomize(folder: Path) -> list[Obj]:
    """The objects `kubectl kustomize FOLDER` renders (offline)."""
    import yaml

    proc = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise DeployError(
            f"kubectl kustomize {folder} failed: {proc.stderr.strip()}",
            hint="render the tree again with `shipml deploy render`",
        )
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
