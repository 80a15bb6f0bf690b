"""What one environment deploys: the models (variants) with their versions and images,
the gateway's traffic policy, the sizes, and the names every object is given.

A plan is plain data resolved from ``shipml.toml`` and the registry once, so the
manifests built from it are a pure function of it (and tests can build plans directly).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shipml.config import ENV_DEFAULTS, DeployEnvSection, ProjectConfig
from shipml.errors import DeployError, RegistryError
from shipml.monitor.alerts import Thresholds, thresholds_of

ENVS = tuple(ENV_DEFAULTS)
SERVE_PORT = 8080  # the serve image's V2 port (the image contract)
GATEWAY_PORT = 8000
MLFLOW_PORT = 5000
POSTGRES_PORT = 5432
# A DNS-1123 label: what Kubernetes accepts as a name of most objects.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Variant:
    """A model server behind the gateway: ``champion`` or ``challenger``."""

    name: str
    ref: str  # what it was resolved from (penguins@champion)
    model: str  # registered model name: the V2 model name
    version: str
    image: str


@dataclass(frozen=True)
class Plan:
    project: str  # the DNS-safe prefix of every object name
    env: str
    namespace: str
    settings: DeployEnvSection
    variants: list[Variant]
    test_image: str
    train_image: str
    mlflow_image: str
    postgres_image: str
    object_store: str = ""
    object_store_endpoint: str = ""
    run_as_user: int = 10001
    monitor_schedule: str = "*/15 * * * *"
    on_breach: str = "fail"  # [monitor] on_breach: what the monitor CronJob does
    alerts: Thresholds = field(default_factory=Thresholds)  # the alert rules' bounds
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def champion(self) -> Variant:
        return self.variants[0]

    @property
    def challengers(self) -> list[Variant]:
        return self.variants[1:]

    def name(self, *parts: str) -> str:
        return "-".join([self.project, *parts])


def dns_name(value: str, what: str) -> str:
    """``value`` as a DNS-1123 label (lower case, ``_`` to ``-``), or a DeployError."""
    name = value.lower().replace("_", "-")
    if len(name) > 40 or not _DNS_LABEL.match(name):
        raise DeployError(
            f"{what} {value!r} cannot name Kubernetes objects",
            hint="use at most 40 letters, digits and '-', starting and ending with a letter "
            "or digit (set [project] name, or [deploy] namespace)",
        )
    return name


def resolve_version(config: ProjectConfig, ref: str) -> tuple[str, str]:
    """(model name, version) of ``NAME/VERSION`` as written, or of ``NAME@ALIAS`` from the
    project's registry."""
    from shipml.tracking import parse_model_ref, resolve_version

    try:
        parsed = parse_model_ref(ref)
    except RegistryError as exc:
        raise DeployError(
            f"[deploy] cannot use the model reference {ref!r}: {exc.message}",
            hint="write NAME@ALIAS or NAME/VERSION",
        ) from exc
    if parsed.name is None:
        raise DeployError(
            f"[deploy] model reference {ref!r} is a folder; images are built per registered "
            "version",
            hint="write NAME@ALIAS or NAME/VERSION",
        )
    if parsed.version is not None:
        return parsed.name, parsed.version
    try:
        info = resolve_version(config, parsed)
    except RegistryError as exc:
        raise DeployError(
            f"cannot deploy {ref}: {exc.message}",
            hint=f"register a model and set the alias (`shipml run --alias {parsed.alias}`), "
            'or pin a version in shipml.toml: [deploy] champion = "NAME/VERSION"',
        ) from exc
    return info.name, info.version


def make_plan(config: ProjectConfig, env: str) -> Plan:
    """Resolve the plan of environment ``env`` (dev, staging or prod)."""
    deploy = config.deploy
    settings = deploy.env(env)
    project = dns_name(config.project.name, "the project name")
    registry = deploy.image_registry.rstrip("/")
    refs = [("champion", deploy.champion or f"{config.model_name}@champion")]
    if settings.mode != "single":
        refs.append(("challenger", deploy.challenger or f"{config.model_name}@challenger"))
    variants = []
    for role, ref in refs:
        model, version = resolve_version(config, ref)
        image = f"{registry}/{project}-serve:{version}"
        variants.append(Variant(role, ref, model, version, image))
    champion_version = variants[0].version
    train_image = config.kubeflow.image or (
        f"{registry}/{project}-train:{config.kubeflow.image_tag}"
    )
    namespace = deploy.namespace or f"{project}-{env}"
    dns_name(namespace, "the namespace")
    return Plan(
        project=project,
        env=env,
        namespace=namespace,
        settings=settings,
        variants=variants,
        test_image=deploy.test_image or f"{registry}/{project}-test:{champion_version}",
        train_image=train_image,
        mlflow_image=deploy.mlflow_image or train_image,
        postgres_image=deploy.postgres_image,
        object_store=deploy.object_store,
        object_store_endpoint=deploy.object_store_endpoint,
        run_as_user=deploy.run_as_user,
        monitor_schedule=deploy.monitor_schedule,
        on_breach=config.monitor.on_breach,
        alerts=thresholds_of(config.monitor),
    )
