"""The building blocks of shipml's Kubernetes objects, as plain dicts: labels and
selectors, restricted pods and containers, Deployments, Services, autoscalers,
disruption budgets and NetworkPolicies. ``manifests`` puts them together per component."""

from __future__ import annotations

from typing import Any

from shipml.deploy.plan import Plan

Obj = dict[str, Any]
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
VARIANT = "shipml.io/variant"


def labels(plan: Plan, component: str, variant: str = "") -> dict[str, str]:
    out = {
        NAME: plan.project,
        COMPONENT: component,
        "app.kubernetes.io/part-of": "shipml",
        "app.kubernetes.io/managed-by": "shipml",
    }
    if variant:
        out[VARIANT] = variant
    return out


def selector(plan: Plan, component: str, variant: str = "") -> dict[str, str]:
    out = {NAME: plan.project, COMPONENT: component}
    if variant:
        out[VARIANT] = variant
    return out


def meta(name: str, lab: dict[str, str], **extra: Any) -> Obj:
    return {"name": name, "labels": dict(lab), **extra}


def pod_security(uid: int) -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


CONTAINER_SECURITY: Obj = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def resources(plan: Plan) -> Obj:
    s = plan.settings
    return {
        "requests": {"cpu": s.cpu_request, "memory": s.memory_request},
        "limits": {"cpu": s.cpu_limit, "memory": s.memory_limit},
    }


def probe(path: str, *, delay: int, period: int = 10) -> Obj:
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


def spread(sel: dict[str, str]) -> list[Obj]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(sel)},
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]


def pod(
    plan: Plan,
    containers: list[Obj],
    volumes: list[Obj],
    *,
    uid: int = 0,
    restart: str = "",
    sel: dict[str, str] | None = None,
) -> Obj:
    spec: Obj = {
        "serviceAccountName": plan.project,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(uid or plan.run_as_user),
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
    }
    if sel is not None:
        spec["topologySpreadConstraints"] = spread(sel)
    if restart:
        spec["restartPolicy"] = restart
    return spec


def container(name: str, image: str, port: int | None, **extra: Any) -> Obj:
    c: Obj = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent"}
    if port is not None:
        c["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    c.update(extra)
    c["securityContext"] = dict(CONTAINER_SECURITY)
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, *c.pop("volumeMounts", [])]
    c["volumeMounts"] = mounts
    return c


def deployment(
    plan: Plan, name: str, component: str, variant: str, pod: Obj, version: str = ""
) -> Obj:
    """A Deployment without ``replicas``: its HorizontalPodAutoscaler owns the count (a
    count here would reset it to the minimum on every server-side apply)."""
    lab = labels(plan, component, variant)
    if version:
        lab["app.kubernetes.io/version"] = version
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, lab),
        "spec": {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(plan, component, variant)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": lab}, "spec": pod},
        },
    }


def service(plan: Plan, name: str, component: str, variant: str, port: int) -> Obj:
    lab = {**labels(plan, component, variant), "shipml.io/metrics": "true"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, lab),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(plan, component, variant),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def hpa(plan: Plan, name: str, component: str, variant: str) -> Obj:
    s = plan.settings
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(name, labels(plan, component, variant)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": s.replicas,
            "maxReplicas": max(s.max_replicas, s.replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def pdb(plan: Plan, name: str, component: str, variant: str) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, labels(plan, component, variant)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(plan, component, variant)},
        },
    }


def netpol(
    plan: Plan, name: str, component: str, variant: str, port: int, sources: list[Obj] | None
) -> Obj:
    """Ingress to the pods on ``port`` only, from ``sources`` (None: from anywhere)."""
    rule: Obj = {"ports": [{"protocol": "TCP", "port": port}]}
    if sources is not None:
        rule["from"] = sources
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(name, labels(plan, component, variant)),
        "spec": {
            "podSelector": {"matchLabels": selector(plan, component, variant)},
            "policyTypes": ["Ingress"],
            "ingress": [rule],
        },
    }


def from_components(plan: Plan, *components: str) -> Obj:
    return {
        "podSelector": {
            "matchExpressions": [
                {"key": NAME, "operator": "In", "values": [plan.project]},
                {"key": COMPONENT, "operator": "In", "values": list(components)},
            ]
        }
    }


# Prometheus, wherever it runs, may scrape the metrics endpoints.
FROM_PROMETHEUS: Obj = {
    "namespaceSelector": {},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
