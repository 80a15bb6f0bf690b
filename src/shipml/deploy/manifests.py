"""The Kubernetes objects of one environment, as plain dicts built from a ``Plan``.

Plain objects only (Deployments, Services, a ConfigMap, HPAs, PDBs, NetworkPolicies, a
Job and a CronJob): no operator is needed, except the Prometheus Operator's
ServiceMonitor and PrometheusRule when ``prometheus_operator`` is set. Objects carry no
namespace and no environment label: the kustomize overlay adds both (``finalize`` does
the same in Python), so objects that do not differ between environments live in the base.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shipml.deploy.plan import GATEWAY_PORT, MLFLOW_PORT, POSTGRES_PORT, SERVE_PORT, Plan
from shipml.errors import DeployError
from shipml.monitor import alerts, grafana

Obj = dict[str, Any]
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
VARIANT = "shipml.io/variant"
ENV_LABEL = "shipml.io/env"
CLUSTER_SCOPED = {"Namespace"}
POSTGRES_UID = 999  # the postgres image's user


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


def _meta(name: str, lab: dict[str, str], **extra: Any) -> Obj:
    return {"name": name, "labels": dict(lab), **extra}


def _pod_security(uid: int) -> Obj:
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


def _resources(plan: Plan) -> Obj:
    s = plan.settings
    return {
        "requests": {"cpu": s.cpu_request, "memory": s.memory_request},
        "limits": {"cpu": s.cpu_limit, "memory": s.memory_limit},
    }


def _probe(path: str, *, delay: int, period: int = 10) -> Obj:
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


def _spread(sel: dict[str, str]) -> list[Obj]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(sel)},
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]


def _pod(
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
        "securityContext": _pod_security(uid or plan.run_as_user),
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
    }
    if sel is not None:
        spec["topologySpreadConstraints"] = _spread(sel)
    if restart:
        spec["restartPolicy"] = restart
    return spec


def _container(name: str, image: str, port: int | None, **extra: Any) -> Obj:
    c: Obj = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent"}
    if port is not None:
        c["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    c.update(extra)
    c["securityContext"] = dict(CONTAINER_SECURITY)
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, *c.pop("volumeMounts", [])]
    c["volumeMounts"] = mounts
    return c


def _deployment(
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
        "metadata": _meta(name, lab),
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


def _service(plan: Plan, name: str, component: str, variant: str, port: int) -> Obj:
    lab = {**labels(plan, component, variant), "shipml.io/metrics": "true"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, lab),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(plan, component, variant),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _hpa(plan: Plan, name: str, component: str, variant: str) -> Obj:
    s = plan.settings
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, labels(plan, component, variant)),
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


def _pdb(plan: Plan, name: str, component: str, variant: str) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, labels(plan, component, variant)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(plan, component, variant)},
        },
    }


def _netpol(
    plan: Plan, name: str, component: str, variant: str, port: int, sources: list[Obj] | None
) -> Obj:
    """Ingress to the pods on ``port`` only, from ``sources`` (None: from anywhere)."""
    rule: Obj = {"ports": [{"protocol": "TCP", "port": port}]}
    if sources is not None:
        rule["from"] = sources
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, labels(plan, component, variant)),
        "spec": {
            "podSelector": {"matchLabels": selector(plan, component, variant)},
            "policyTypes": ["Ingress"],
            "ingress": [rule],
        },
    }


def _from_components(plan: Plan, *components: str) -> Obj:
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


# -- the parts ----------------------------------------------------------------------------


def model_server(plan: Plan, variant_index: int) -> list[Obj]:
    v = plan.variants[variant_index]
    name = plan.name(v.name)
    container = _container(
        "server",
        v.image,
        SERVE_PORT,
        resources=_resources(plan),
        readinessProbe=_probe("/v2/health/ready", delay=2, period=5),
        livenessProbe=_probe("/v2/health/live", delay=10),
    )
    pod = _pod(plan, [container], [], sel=selector(plan, "model-server", v.name))
    sources = [_from_components(plan, "gateway", "tests", "monitor"), FROM_PROMETHEUS]
    return [
        _deployment(plan, name, "model-server", v.name, pod, v.version),
        _service(plan, name, "model-server", v.name, SERVE_PORT),
        _hpa(plan, name, "model-server", v.name),
        _pdb(plan, name, "model-server", v.name),
        _netpol(plan, name, "model-server", v.name, SERVE_PORT, sources),
    ]


def gateway_config(plan: Plan, team_tracking: str = "") -> str:
    """The gateway's shipml.toml: its traffic policy (and where its audit log goes)."""
    champion, challengers = plan.champion, plan.challengers

    def url(role: str) -> str:
        return f"{role}=http://{plan.name(role)}:{SERVE_PORT}"

    s = plan.settings
    lines = [
        "# The gateway's settings, rendered by `shipml deploy render`.",
        "[project]",
        f"name = {json.dumps(plan.project)}",
        "",
        "[audit]",
        'path = "/var/lib/shipml/audit/audit.db"',
        'signing_key = "/var/lib/shipml/audit/signing.key"',
        'checkpoint_dir = "/var/lib/shipml/audit/checkpoints"',
        "",
    ]
    if team_tracking:
        lines += ["[tracking]", f"uri = {json.dumps(team_tracking)}", ""]
    lines += [
        "[rollout]",
        'host = "0.0.0.0"',
        f"port = {GATEWAY_PORT}",
        f"mode = {json.dumps(s.mode)}",
        f"champion = {json.dumps(url(champion.name))}",
        f"challengers = {json.dumps([url(c.name) for c in challengers])}",
    ]
    if s.mode == "shadow":
        lines.append(f"shadow_fraction = {s.shadow_fraction}")
    return "\n".join(lines) + "\n"


def gateway(plan: Plan) -> list[Obj]:
    name = plan.name("gateway")
    team = plan.name("mlflow") if plan.settings.team_mode else ""
    tracking = f"http://{team}:{MLFLOW_PORT}" if team else ""
    toml = gateway_config(plan, tracking)
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, labels(plan, "gateway")),
        "data": {"shipml.toml": toml},
    }
    container = _container(
        "gateway",
        plan.champion.image,
        GATEWAY_PORT,
        command=["shipml", "-C", "/etc/shipml", "gateway"],
        resources=_resources(plan),
        readinessProbe=_probe("/v2/health/ready", delay=2, period=5),
        livenessProbe=_probe("/v2/health/live", delay=10),
        volumeMounts=[
            {"name": "config", "mountPath": "/etc/shipml", "readOnly": True},
            {"name": "state", "mountPath": "/var/lib/shipml"},
        ],
    )
    volumes = [{"name": "config", "configMap": {"name": name}}, {"name": "state", "emptyDir": {}}]
    pod = _pod(plan, [container], volumes, sel=selector(plan, "gateway"))
    pod["containers"][0]["env"] = [
        {
            "name": "SHIPML_ROLLOUT_ADMIN_TOKEN",
            "valueFrom": {
                "secretKeyRef": {
                    "name": plan.name("gateway-admin"),
                    "key": "token",
                    "optional": True,
                }
            },
        }
    ]
    deployment = _deployment(plan, name, "gateway", "", pod)
    # A new policy rolls the gateway: the ConfigMap's digest is part of the pod template.
    digest = hashlib.sha256(toml.encode()).hexdigest()[:16]
    deployment["spec"]["template"]["metadata"]["annotations"] = {"shipml.io/config": digest}
    return [
        config,
        deployment,
        _service(plan, name, "gateway", "", GATEWAY_PORT),
        _hpa(plan, name, "gateway", ""),
        _pdb(plan, name, "gateway", ""),
        _netpol(plan, name, "gateway", "", GATEWAY_PORT, None),
    ]


def tests_job(plan: Plan) -> Obj:
    """The test container (entrypoint `shipml test`) run once against this deployment."""
    lab = labels(plan, "tests")
    container = _container("tests", plan.test_image, None, resources=_resources(plan))
    pod = _pod(plan, [container], [], restart="Never")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(plan.name("tests", plan.champion.version), lab),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 1800,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": lab}, "spec": pod},
        },
    }


def monitor_cronjob(plan: Plan) -> Obj:
    """Every ``monitor_schedule``: ``shipml monitor`` of the champion (drift and quality
    from the audit log), retraining on a breach when ``[monitor] on_breach = "retrain"``.
    It runs in the train image (the project, shipml and MLflow)."""
    lab = labels(plan, "monitor")
    command = [
        "shipml",
        "monitor",
        f"{plan.champion.model}@champion",
        "--on-breach",
        plan.on_breach,
    ]
    container = _container(
        "monitor", plan.train_image, None, resources=_resources(plan), command=command
    )
    pod = _pod(plan, [container], [], restart="Never")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(plan.name("monitor"), lab),
        "spec": {
            "schedule": plan.monitor_schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {"backoffLimit": 1, "template": {"metadata": {"labels": lab}, "spec": pod}}
            },
        },
    }


def rules_group(plan: Plan) -> Obj:
    """The project's alert rules (shipml.monitor.alerts), on its Services' series."""
    return alerts.group(
        f"{plan.project}.shipml", f'service=~"{plan.project}-.*"', thresholds=plan.alerts
    )


def prometheus(plan: Plan) -> list[Obj]:
    """ServiceMonitor for every shipml Service, the alert rules (PrometheusRule) and the
    Grafana dashboard (a ConfigMap that Grafana's sidecar loads)."""
    lab = labels(plan, "monitoring")
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": _meta(plan.project, lab),
            "spec": {
                "selector": {"matchLabels": {NAME: plan.project, "shipml.io/metrics": "true"}},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": _meta(plan.project, lab),
            "spec": {"groups": [rules_group(plan)]},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(plan.name("dashboard"), {**lab, "grafana_dashboard": "1"}),
            "data": {f"{plan.project}-shipml.json": grafana.dashboard_json()},
        },
    ]


def tracking_server(plan: Plan) -> list[Obj]:
    """Team mode: MLflow's tracking server on PostgreSQL, artifacts in the object store.

    Expects two Secrets made outside shipml: ``<project>-mlflow-db`` (key ``password``)
    and ``<project>-object-store`` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."""
    if not plan.object_store:
        raise DeployError(
            f"[deploy.{plan.env}] team_mode needs an object store for MLflow's "
            "artifacts, and [deploy] object_store is empty",
            hint='set [deploy] object_store = "s3://BUCKET/PREFIX"',
        )
    db, mlflow = plan.name("postgres"), plan.name("mlflow")
    password = {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": plan.name("mlflow-db"), "key": "password"}},
    }
    pg = _container(
        "postgres",
        plan.postgres_image,
        POSTGRES_PORT,
        env=[
            {"name": "POSTGRES_USER", "value": "mlflow"},
            {"name": "POSTGRES_DB", "value": "mlflow"},
            {**password, "name": "POSTGRES_PASSWORD"},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        resources=_resources(plan),
        readinessProbe={"exec": {"command": ["pg_isready", "-U", "mlflow"]}, "periodSeconds": 5},
        livenessProbe={
            "exec": {"command": ["pg_isready", "-U", "mlflow"]},
            "periodSeconds": 10,
            "initialDelaySeconds": 30,
        },
        volumeMounts=[
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
        ],
    )
    pg_lab = labels(plan, "postgres")
    pg_pod = _pod(plan, [pg], [{"name": "run", "emptyDir": {}}], uid=POSTGRES_UID)
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(db, pg_lab),
        "spec": {
            "serviceName": db,
            "replicas": 1,
            "selector": {"matchLabels": selector(plan, "postgres")},
            "template": {"metadata": {"labels": pg_lab}, "spec": pg_pod},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "10Gi"}},
                    },
                }
            ],
        },
    }
    env = [password]
    if plan.object_store_endpoint:
        env.append({"name": "MLFLOW_S3_ENDPOINT_URL", "value": plan.object_store_endpoint})
    server = _container(
        "mlflow",
        plan.mlflow_image,
        MLFLOW_PORT,
        command=[
            "mlflow",
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            str(MLFLOW_PORT),
            "--backend-store-uri",
            f"postgresql+psycopg://mlflow:$(DB_PASSWORD)@{db}:{POSTGRES_PORT}/mlflow",
            "--artifacts-destination",
            plan.object_store,
            "--serve-artifacts",
        ],
        env=env,
        envFrom=[{"secretRef": {"name": plan.name("object-store"), "optional": True}}],
        resources=_resources(plan),
        readinessProbe=_probe("/health", delay=5),
        livenessProbe=_probe("/health", delay=30),
    )
    pod = _pod(plan, [server], [], sel=selector(plan, "mlflow"))
    deployment = _deployment(plan, mlflow, "mlflow", "", pod)
    deployment["spec"]["replicas"] = 1  # no autoscaler: one tracking server
    inside = {"podSelector": {"matchLabels": {NAME: plan.project}}}
    return [
        statefulset,
        _service(plan, db, "postgres", "", POSTGRES_PORT),
        _netpol(plan, db, "postgres", "", POSTGRES_PORT, [_from_components(plan, "mlflow")]),
        deployment,
        _service(plan, mlflow, "mlflow", "", MLFLOW_PORT),
        _netpol(plan, mlflow, "mlflow", "", MLFLOW_PORT, [inside]),
    ]


def build(plan: Plan) -> list[Obj]:
    """Every object of the plan's environment (without namespace and env label)."""
    objects: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(plan.project, labels(plan, "identity")),
            "automountServiceAccountToken": False,
        },
    ]
    for i in range(len(plan.variants)):
        objects += model_server(plan, i)
    objects += gateway(plan)
    objects += [tests_job(plan), monitor_cronjob(plan)]
    if plan.settings.prometheus_operator:
        objects += prometheus(plan)
    if plan.settings.team_mode:
        objects += tracking_server(plan)
    return objects


def namespace(plan: Plan) -> Obj:
    lab = {"app.kubernetes.io/managed-by": "shipml"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(plan.namespace, lab)}


def finalize(plan: Plan, objects: list[Obj]) -> list[Obj]:
    """What the overlay makes of ``objects``: the namespace object first, every object in
    the environment's namespace and labelled with it (kustomize does the same)."""
    out = []
    for obj in [namespace(plan), *objects]:
        obj = json.loads(json.dumps(obj))
        obj["metadata"].setdefault("labels", {})[ENV_LABEL] = plan.env
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = plan.namespace
        out.append(obj)
    return out


def key(obj: Obj) -> tuple[str, str, str]:
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]
