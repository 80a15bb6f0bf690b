"""`shipml tune` on Kubernetes: Optuna's distributed mode as two Jobs sharing one study.

``[tune] workers = N`` adds, to every rendered environment, a Job of N parallel pods
running ``shipml tune --worker`` (trials only) and a lead Job running ``shipml tune``
(trials, then the wrap-up: the best trained again, tested, registered as
``challenger``). Every pod opens the same study, so they need a database all of them
reach: team mode's PostgreSQL (the study in its schema ``optuna``, the password from
the ``<project>-mlflow-db`` Secret, the tracking server over HTTP), or a PostgreSQL
``[tune] storage`` / ``[tracking] uri`` (its password from the same Secret, as
``PGPASSWORD``). A SQLite file cannot be shared by pods: the render refuses.
"""

from __future__ import annotations

from shipml.deploy import objects as k8s
from shipml.deploy.objects import Obj
from shipml.deploy.plan import MLFLOW_PORT, POSTGRES_PORT, Plan, TunePlan
from shipml.pipeline.budget import parse_duration

COMPONENT = "tune"  # team mode's PostgreSQL admits this component (deploy.team)
STATE = "/project/.shipml"  # the train image's project: the pipeline cache, logs
SLACK_S = 1800  # the Jobs' deadline beyond the budget: start-up, the wrap-up, tests
# A SIGTERM (the Job's deadline, a drained node) makes the lead wrap up the best-so-far:
# a training and the gate suites must fit in the grace period.
WRAP_UP_GRACE_S = 900


def _env(plan: Plan, tp: TunePlan) -> list[Obj]:
    password = {
        "valueFrom": {
            "secretKeyRef": {"name": plan.name("mlflow-db"), "key": "password", "optional": True}
        }
    }
    env: list[Obj] = [{"name": "HOME", "value": "/tmp"}]
    if tp.team:
        db = f"{plan.name('postgres')}:{POSTGRES_PORT}/mlflow"
        env += [
            {"name": "DB_PASSWORD", **password},
            {"name": "SHIPML_TRACKING_URI", "value": f"http://{plan.name('mlflow')}:{MLFLOW_PORT}"},
            {
                "name": "SHIPML_TUNE_STORAGE",
                "value": f"postgresql+psycopg://mlflow:$(DB_PASSWORD)@{db}",
            },
        ]
    else:
        env += [{"name": "PGPASSWORD", **password}]
        env += [{"name": "SHIPML_TRACKING_URI", "value": tp.tracking_uri}]
        if tp.storage:
            env += [{"name": "SHIPML_TUNE_STORAGE", "value": tp.storage}]
    if plan.object_store_endpoint:
        env.append({"name": "MLFLOW_S3_ENDPOINT_URL", "value": plan.object_store_endpoint})
    return env


def _job(plan: Plan, tp: TunePlan, role: str, command: list[str], pods: int) -> Obj:
    lab = {**k8s.labels(plan, COMPONENT), "shipml.io/tune-role": role}
    container = k8s.container(
        role,
        plan.train_image,
        None,
        command=command,
        env=_env(plan, tp),
        envFrom=[{"secretRef": {"name": plan.name("object-store"), "optional": True}}],
        resources=k8s.resources(plan),
        volumeMounts=[{"name": "state", "mountPath": STATE}],
    )
    pod = k8s.pod(plan, [container], [{"name": "state", "emptyDir": {}}], restart="Never")
    if role == "lead":
        pod["terminationGracePeriodSeconds"] = WRAP_UP_GRACE_S
    name = plan.name("tune") if role == "lead" else plan.name("tune", "workers")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": k8s.meta(name, lab),
        "spec": {
            "parallelism": pods,
            "completions": pods,
            # A pod that dies is replaced; the study keeps its trials (heartbeats mark
            # the lost one failed), so a new pod goes on where it was.
            "backoffLimit": pods,
            "activeDeadlineSeconds": int(parse_duration(tp.budget)) + SLACK_S,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": lab}, "spec": pod},
        },
    }


def tune_jobs(plan: Plan) -> list[Obj]:
    """The worker Job (``workers`` pods) and the lead Job of the plan's search."""
    tp = plan.tune
    if tp is None:
        return []
    args = ["--study", tp.study, "--budget", tp.budget]
    return [
        _job(plan, tp, "worker", ["shipml", "tune", "--worker", *args], tp.workers),
        _job(plan, tp, "lead", ["shipml", "tune", *args], 1),
    ]
