"""Team mode in Kubernetes: MLflow's tracking server on PostgreSQL (a StatefulSet), its
artifacts in the object store, each reachable only from where it must be.

Expects two Secrets made outside shipml: ``<project>-mlflow-db`` (key ``password``)
and ``<project>-object-store`` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."""

from __future__ import annotations

from shipml.deploy import objects as k8s
from shipml.deploy.objects import NAME, Obj
from shipml.deploy.plan import MLFLOW_PORT, POSTGRES_PORT, Plan
from shipml.errors import DeployError
from shipml.tracking.server import SERVER_DEFAULTS

POSTGRES_UID = 999  # the postgres image's user


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
    db = plan.name("postgres")
    return [
        _postgres(plan, db),
        k8s.service(plan, db, "postgres", "", POSTGRES_PORT),
        # the tracking server, and the tuning Jobs' study (shipml.deploy.tuning)
        k8s.netpol(
            plan, db, "postgres", "", POSTGRES_PORT, [k8s.from_components(plan, "mlflow", "tune")]
        ),
        *_mlflow(plan, db),
    ]


def _password(plan: Plan) -> Obj:
    return {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": plan.name("mlflow-db"), "key": "password"}},
    }


def _postgres(plan: Plan, db: str) -> Obj:
    """The database: a StatefulSet of one, its data on a volume claim."""
    password = _password(plan)
    pg = k8s.container(
        "postgres",
        plan.postgres_image,
        POSTGRES_PORT,
        env=[
            {"name": "POSTGRES_USER", "value": "mlflow"},
            {"name": "POSTGRES_DB", "value": "mlflow"},
            {**password, "name": "POSTGRES_PASSWORD"},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        resources=k8s.resources(plan),
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
    pg_lab = k8s.labels(plan, "postgres")
    pg_pod = k8s.pod(plan, [pg], [{"name": "run", "emptyDir": {}}], uid=POSTGRES_UID)
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": k8s.meta(db, pg_lab),
        "spec": {
            "serviceName": db,
            "replicas": 1,
            "selector": {"matchLabels": k8s.selector(plan, "postgres")},
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
    return statefulset


def _mlflow(plan: Plan, db: str) -> list[Obj]:
    """The tracking server, its Service and who may reach it (the project's own pods)."""
    mlflow = plan.name("mlflow")
    env = [_password(plan), {"name": "MLFLOW_ENABLE_TELEMETRY", "value": "false"}]
    env += [{"name": k, "value": v} for k, v in SERVER_DEFAULTS.items()]
    if plan.object_store_endpoint:
        env.append({"name": "MLFLOW_S3_ENDPOINT_URL", "value": plan.object_store_endpoint})
    server = k8s.container(
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
        resources=k8s.resources(plan),
        readinessProbe=k8s.probe("/health", delay=5),
        livenessProbe=k8s.probe("/health", delay=30),
    )
    pod = k8s.pod(plan, [server], [], sel=k8s.selector(plan, "mlflow"))
    deployment = k8s.deployment(plan, mlflow, "mlflow", "", pod)
    deployment["spec"]["replicas"] = 1  # no autoscaler: one tracking server
    inside = {"podSelector": {"matchLabels": {NAME: plan.project}}}
    return [
        deployment,
        k8s.service(plan, mlflow, "mlflow", "", MLFLOW_PORT),
        k8s.netpol(plan, mlflow, "mlflow", "", MLFLOW_PORT, [inside]),
    ]
