"""Settings of images, deployments, Kubeflow, CI and the team's tracking server."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from shipml.config.section import Section
from shipml.config.serving import TrafficMode
from shipml.errors import ConfigError

DeployTarget = Literal["podman", "kubernetes"]

# The registry part of an image reference (the grammar of the distribution project's
# reference package): HOST[:PORT] then /PATH components, all lowercase here.
_HOST = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = re.compile(rf"{_HOST}(?:\.{_HOST})*(?::[0-9]{{1,5}})?(?:/{_PATH})*")
_REGISTRY_FORM = "HOST[:PORT][/PATH], e.g. ghcr.io/acme, registry.local:5000/ml or localhost"


def _registry(value: str) -> str:
    """An image registry as images are named with it: ``REGISTRY/PROJECT-KIND:VERSION``.
    One trailing slash is dropped (``ghcr.io/acme/`` always meant ``ghcr.io/acme``)."""
    value = value.removesuffix("/")
    if "://" in value:
        why = f"an image registry has no scheme: drop {value.split('://')[0]}://"
    elif value != value.lower():
        why = "an image reference is lowercase"
    elif not value or any(c.isspace() for c in value):
        why = "an image registry is not empty and has no spaces"
    elif len(value) > 200 or not _REGISTRY.fullmatch(value):
        why = "an image registry is a host, an optional port and path"
    else:
        return value
    raise ValueError(f"{why}; write {_REGISTRY_FORM}")


def _registry_or_none(value: str) -> str:
    return value if value == "" else _registry(value)


# Every setting that names an image registry is one of these (checked when read).
ImageRegistry = Annotated[str, AfterValidator(_registry)]
OptionalImageRegistry = Annotated[str, AfterValidator(_registry_or_none)]


class ContainersSection(Section):
    """Container images (``shipml build``, ``shipml base build``); see docs/containers.md."""

    # The image every shipml image starts FROM. `shipml base build` makes an offline one
    # from Debian's packages (localhost/shipml-base:bookworm).
    base_image: str = "python:3.11-slim"
    # empty: the first of podman, docker, buildah found
    engine: Literal["", "podman", "docker", "buildah"] = ""
    # Images are named REGISTRY/PROJECT-KIND:VERSION (empty: PROJECT-KIND:VERSION).
    registry: OptionalImageRegistry = "localhost"
    # Host files mounted into the build's RUN steps (podman and buildah only), e.g. a CA
    # bundle pip needs behind a TLS-inspecting proxy. A missing host file is skipped.
    build_volumes: list[str] = Field(
        default_factory=lambda: [
            "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"
        ]
    )


class DeployEnvSection(Section):
    """One environment of ``shipml deploy`` (dev, staging, prod): sizes and traffic policy."""

    replicas: int = Field(default=1, ge=1)  # the autoscalers' minimum (servers, gateway)
    max_replicas: int = Field(default=2, ge=1)  # HorizontalPodAutoscaler ceiling
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    # The gateway's traffic policy here: single | shadow | ab | canary. Any mode but
    # single deploys the challenger too.
    mode: TrafficMode = "single"
    shadow_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    # An MLflow tracking server on PostgreSQL and [deploy] object_store.
    team_mode: bool = False
    prometheus_operator: bool = False  # ServiceMonitor and PrometheusRule
    # Podman: the host port (on 127.0.0.1) the gateway is published on; one per env, so
    # staging and prod can run side by side on one machine (as `shipml ci run` does).
    host_port: int = Field(default=8000, ge=1, le=65535)


# What each environment differs in by default; a [deploy.ENV] table changes only the keys
# it names (so [deploy.staging] replicas = 5 keeps staging's shadow mode).
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {},
    "staging": {"replicas": 2, "max_replicas": 4, "mode": "shadow", "host_port": 8001},
    "prod": {
        "replicas": 3,
        "max_replicas": 10,
        "cpu_limit": "2",
        "memory_limit": "2Gi",
        "host_port": 8002,
    },
}


def _env(name: str) -> Any:
    return Field(default_factory=lambda: DeployEnvSection(**ENV_DEFAULTS[name]))


class DeploySection(Section):
    """Kubernetes manifests (``shipml deploy``): a kustomize base and one overlay per env."""

    output: str = "deploy"  # where `shipml deploy render` writes the kustomize tree
    kubernetes_version: str = "1.32"  # the OpenAPI schema every object is checked against
    namespace: str = ""  # empty: <project>-<env>
    # Images: <registry>/<project>-serve:<model version>, -test:<model version>.
    image_registry: ImageRegistry = "localhost"
    champion: str = ""  # REF (NAME@ALIAS or NAME/VERSION); empty: <model>@champion
    challenger: str = ""  # empty: <model>@challenger
    test_image: str = ""  # empty: <registry>/<project>-test:<champion's version>
    run_as_user: int = Field(default=10001, ge=1)  # the images' non-root user
    monitor_schedule: str = "*/15 * * * *"  # the monitoring CronJob
    # Team mode: the MLflow server's image, database image, and artifact store.
    mlflow_image: str = ""  # empty: the train image (needs shipml[postgres])
    postgres_image: str = "docker.io/library/postgres:16"
    object_store: str = ""  # s3://bucket/prefix for MLflow artifacts
    object_store_endpoint: str = ""  # an S3-compatible endpoint (MinIO...); empty: AWS
    dev: DeployEnvSection = _env("dev")
    staging: DeployEnvSection = _env("staging")
    prod: DeployEnvSection = _env("prod")

    @model_validator(mode="before")
    @classmethod
    def _env_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for env, defaults in ENV_DEFAULTS.items():
                if isinstance(data.get(env), dict):
                    data[env] = {**defaults, **data[env]}
        return data

    def env(self, name: str) -> DeployEnvSection:
        """The settings of environment ``name`` (dev, staging or prod)."""
        if name not in ENV_DEFAULTS:
            raise ConfigError(
                f"unknown environment {name!r}", hint=f"use one of: {', '.join(ENV_DEFAULTS)}"
            )
        section: DeployEnvSection = getattr(self, name)
        return section


class StepResources(Section):
    cpu_request: str = ""
    cpu_limit: str = ""
    memory_request: str = ""
    memory_limit: str = ""


class KubeflowSection(Section):
    """``shipml pipeline compile --target kubeflow``."""

    image: str = ""  # empty: <deploy.image_registry>/<project>-train:<image_tag>
    image_tag: str = "latest"
    caching: bool = True  # KFP caching for steps whose @step has cache=True
    resources: dict[str, StepResources] = Field(default_factory=dict)  # per step name


class CISection(Section):
    """``shipml ci init`` and ``shipml ci run``."""

    provider: Literal["github", "gitlab"] = "github"
    python: str = "3.11"
    # How a CI job installs shipml; empty: the exact version and source that generated the
    # workflow (a wheel `shipml ci init` builds into ci/, a git URL, or an index).
    install: str = ""
    index_url: str = ""  # install shipml==VERSION from this package index
    branch: str = "main"  # deploys and promotions happen from this branch only
    target: DeployTarget = "kubernetes"  # where the generated workflows deploy
    local_target: DeployTarget = "podman"  # where `shipml ci run` deploys
    # The staging gateway the analysis stage reads (default: staging on podman, here).
    staging_gateway: str = "http://127.0.0.1:8001"


class ServerSection(Section):
    """``shipml server start``: a team's MLflow tracking server (docs/team.md). Passwords
    never go here: PGPASSWORD (or SHIPML_SERVER_BACKEND_URI) and AWS_* come from the
    environment."""

    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    # postgresql://USER@HOST:5432/DB; empty: SQLite in .shipml/server/mlflow.db
    backend_uri: str = ""
    # Where the server keeps artifacts: s3://BUCKET/PREFIX; empty: .shipml/server/artifacts
    artifacts: str = ""
