"""The Kubernetes objects of one environment, as plain dicts built from a ``Plan``.

Plain objects only (Deployments, Services, a ConfigMap, HPAs, PDBs, NetworkPolicies,
Jobs and a CronJob): no operator is needed, except the Prometheus Operator's
ServiceMonitor and PrometheusRule when ``prometheus_operator`` is set. Objects carry no
namespace and no environment label: the kustomize overlay adds both (``finalize`` does
the same in Python), so objects that do not differ between environments live in the base.
"""

from __future__ import annotations

import hashlib
import json

from shipml.deploy import objects as k8s
from shipml.deploy.objects import COMPONENT, FROM_PROMETHEUS, NAME, VARIANT, Obj
from shipml.deploy.plan import GATEWAY_PORT, MLFLOW_PORT, SERVE_PORT, Plan
from shipml.deploy.team import tracking_server
from shipml.deploy.tuning import tune_jobs
from shipml.monitor import alerts, grafana

__all__ = ["COMPONENT", "NAME", "VARIANT", "build", "finalize", "key", "namespace"]

ENV_LABEL = "shipml.io/env"
CLUSTER_SCOPED = {"Namespace"}


# -- the parts ----------------------------------------------------------------------------


def model_server(plan: Plan, variant_index: int) -> list[Obj]:
    v = plan.variants[variant_index]
    name = plan.name(v.name)
    container = k8s.container(
        "server",
        v.image,
        SERVE_PORT,
        resources=k8s.resources(plan),
        readinessProbe=k8s.probe("/v2/health/ready", delay=2, period=5),
        livenessProbe=k8s.probe("/v2/health/live", delay=10),
    )
    pod = k8s.pod(plan, [container], [], sel=k8s.selector(plan, "model-server", v.name))
    sources = [k8s.from_components(plan, "gateway", "tests", "monitor"), FROM_PROMETHEUS]
    return [
        k8s.deployment(plan, name, "model-server", v.name, pod, v.version),
        k8s.service(plan, name, "model-server", v.name, SERVE_PORT),
        k8s.hpa(plan, name, "model-server", v.name),
        k8s.pdb(plan, name, "model-server", v.name),
        k8s.netpol(plan, name, "model-server", v.name, SERVE_PORT, sources),
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
        "metadata": k8s.meta(name, k8s.labels(plan, "gateway")),
        "data": {"shipml.toml": toml},
    }
    container = k8s.container(
        "gateway",
        plan.champion.image,
        GATEWAY_PORT,
        command=["shipml", "-C", "/etc/shipml", "gateway"],
        resources=k8s.resources(plan),
        readinessProbe=k8s.probe("/v2/health/ready", delay=2, period=5),
        livenessProbe=k8s.probe("/v2/health/live", delay=10),
        volumeMounts=[
            {"name": "config", "mountPath": "/etc/shipml", "readOnly": True},
            {"name": "state", "mountPath": "/var/lib/shipml"},
        ],
    )
    volumes = [{"name": "config", "configMap": {"name": name}}, {"name": "state", "emptyDir": {}}]
    pod = k8s.pod(plan, [container], volumes, sel=k8s.selector(plan, "gateway"))
    pod["containers"][0]["env"] = [  # the tokens from a Secret (never the ConfigMap)
        {
            "name": f"SHIPML_ROLLOUT_{variable}_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": plan.name("gateway-admin"), "key": key, "optional": True}
            },
        }
        for variable, key in (("ADMIN", "token"), ("FEEDBACK", "feedback-token"))
    ]
    deployment = k8s.deployment(plan, name, "gateway", "", pod)
    # A new policy rolls the gateway: the ConfigMap's digest is part of the pod template.
    digest = hashlib.sha256(toml.encode()).hexdigest()[:16]
    deployment["spec"]["template"]["metadata"]["annotations"] = {"shipml.io/config": digest}
    return [
        config,
        deployment,
        k8s.service(plan, name, "gateway", "", GATEWAY_PORT),
        k8s.hpa(plan, name, "gateway", ""),
        k8s.pdb(plan, name, "gateway", ""),
        k8s.netpol(plan, name, "gateway", "", GATEWAY_PORT, None),
    ]


def tests_job(plan: Plan) -> Obj:
    """The test container (entrypoint `shipml test`) run once against this deployment."""
    lab = k8s.labels(plan, "tests")
    container = k8s.container("tests", plan.test_image, None, resources=k8s.resources(plan))
    pod = k8s.pod(plan, [container], [], restart="Never")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": k8s.meta(plan.name("tests", plan.champion.version), lab),
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
    lab = k8s.labels(plan, "monitor")
    command = [
        "shipml",
        "monitor",
        f"{plan.champion.model}@champion",
        "--on-breach",
        plan.on_breach,
    ]
    container = k8s.container(
        "monitor", plan.train_image, None, resources=k8s.resources(plan), command=command
    )
    pod = k8s.pod(plan, [container], [], restart="Never")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": k8s.meta(plan.name("monitor"), lab),
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
    lab = k8s.labels(plan, "monitoring")
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": k8s.meta(plan.project, lab),
            "spec": {
                "selector": {"matchLabels": {NAME: plan.project, "shipml.io/metrics": "true"}},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": k8s.meta(plan.project, lab),
            "spec": {"groups": [rules_group(plan)]},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": k8s.meta(plan.name("dashboard"), {**lab, "grafana_dashboard": "1"}),
            "data": {f"{plan.project}-shipml.json": grafana.dashboard_json()},
        },
    ]


def build(plan: Plan) -> list[Obj]:
    """Every object of the plan's environment (without namespace and env label)."""
    objects: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": k8s.meta(plan.project, k8s.labels(plan, "identity")),
            "automountServiceAccountToken": False,
        },
    ]
    for i in range(len(plan.variants)):
        objects += model_server(plan, i)
    objects += gateway(plan)
    objects += [tests_job(plan), monitor_cronjob(plan), *tune_jobs(plan)]
    if plan.settings.prometheus_operator:
        objects += prometheus(plan)
    if plan.settings.team_mode:
        objects += tracking_server(plan)
    return objects


def namespace(plan: Plan) -> Obj:
    lab = {"app.kubernetes.io/managed-by": "shipml"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": k8s.meta(plan.namespace, lab)}


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
