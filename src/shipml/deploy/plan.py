"""What one environment deploys: the models (variants) with their versions and images,
the gateway's traffic policy, the sizes, and the names every object is given.

A plan is plain data resolved from ``shipml.toml`` and the registry once, so the
manifests built from it are a pure function of it (and tests can build plans directly).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shipml.config import ENV_DEFAULTS, DeployEnvSection, ProjectConfig
from shipml.errors import ConfigError, DeployError, RegistryError
from shipml.monitor.alerts import Thresholds, thresholds_of
from shipml.pipeline.budget import parse_duration

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
class TunePlan:
    """What the tuning Jobs run: how many workers, the study, its budget and where the
    pods find the tracking store and the study."""

    workers: int
    study: str
    budget: str
    tracking_uri: str = ""  # empty: the image's shipml.toml says
    storage: str = ""  # [tune] storage in the pods; empty: the tracking store's database
    team: bool = False  # team mode's in-cluster PostgreSQL and MLflow server


def _postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password is not None
    except Exception:  # not a URL SQLAlchemy reads (http://...): the generic URL form
        try:
            return urlsplit(url).password is not None
        except ValueError:
            return False


def tune_plan(config: ProjectConfig, env: str, team: bool) -> TunePlan | None:
    """The tuning Jobs of environment ``env`` (None when ``[tune] workers`` is 0); a
    ConfigError when their pods would not share one study."""
    tune = config.tune
    if tune.workers == 0:
        return None
    from shipml.pipeline.tune import STUDY_RE

    parse_duration(tune.budget)  # a bad budget fails here, not in the cluster
    study = tune.study or config.project.name
    if not STUDY_RE.match(study):
        raise ConfigError(
            f"[tune] study {study[:60]!r} cannot name the tuning Jobs' study",
            hint="use letters, digits, '_', '.' or '-' (at most 100), starting with a letter",
        )
    if team:
        return TunePlan(tune.workers, study, tune.budget, team=True)
    shared = tune.storage or config.tracking.uri
    if not _postgres(shared):
        raise ConfigError(
            f"[tune] workers = {tune.workers} asks for worker Jobs in {env}, but their "
            f"study would be in {_what(tune.storage, config.tracking.uri)}, which pods "
            "cannot share",
            hint=f"turn on team mode ([deploy.{env}] team_mode = true), or set a PostgreSQL "
            '[tracking] uri or [tune] storage ("postgresql+psycopg://USER@HOST:5432/DB"), '
            "or set [tune] workers = 0",
        )
    # Both URLs go into the Jobs' environment as plain values: neither may hold a secret.
    for what, url in (("[tune] storage", tune.storage), ("[tracking] uri", config.tracking.uri)):
        if _has_password(url):
            raise ConfigError(
                f"{what}, which the tuning Jobs would use, has a password in it, and the "
                "manifests would show it",
                hint=f"remove it from the URL and put it in the Secret {config.project.name}-"
                "mlflow-db (key password): the pods get it as PGPASSWORD",
            )
    storage = tune.storage if _postgres(tune.storage) else ""
    return TunePlan(tune.workers, study, tune.budget, config.tracking.uri, storage)


def _what(storage: str, uri: str) -> str:
    if storage:
        return f"[tune] storage {storage[:60]!r}"
    if not uri or uri.startswith("sqlite:") or "://" not in uri:
        return f"a SQLite file beside [tracking] uri {uri[:60]!r}"
    return f"a SQLite file in each pod ([tracking] uri {uri[:60]!r} is not a database)"


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
    tune: TunePlan | None = None  # [tune] workers: the tuning Jobs (deploy.tuning)

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


# What the API server accepts (the schema takes any string: a typo passed render and
# failed at apply): a quantity (250m, 1.5, 512Mi) and a five-field or @macro schedule.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_CRON = re.compile(r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$")


def check_settings(config: ProjectConfig, env: str) -> None:
    """A DeployError naming the first size or schedule the API server would refuse."""
    settings = config.deploy.env(env)
    for key in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
        value = getattr(settings, key)
        if not _QUANTITY.match(value):
            raise DeployError(
                f"[deploy.{env}] {key} = {value[:40]!r} is not a Kubernetes quantity",
                hint='write it as Kubernetes does: cpu "250m" or "1", memory "512Mi" or "2Gi"',
            )
    schedule = config.deploy.monitor_schedule.strip()
    if not _CRON.match(schedule) or not all(
        re.fullmatch(r"[0-9A-Za-z*/,?-]+", f) for f in schedule.split() if f[0] != "@"
    ):
        raise DeployError(
            f"[deploy] monitor_schedule {schedule[:40]!r} is not a cron schedule",
            hint='five fields (minute hour day month weekday), e.g. "*/15 * * * *", or @hourly',
        )


def make_plan(config: ProjectConfig, env: str) -> Plan:
    """Resolve the plan of environment ``env`` (dev, staging or prod)."""
    deploy = config.deploy
    settings = deploy.env(env)
    check_settings(config, env)
    tune = tune_plan(config, env, settings.team_mode)
    project = dns_name(config.project.name, "the project name")
    registry = deploy.image_registry
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
    if _has_password(deploy.object_store_endpoint):  # rendered as a plain env value
        raise ConfigError(
            "[deploy] object_store_endpoint has a password in it, and the manifests would show it",
            hint=f"remove it from the URL; the keys go in the Secret {project}-object-store "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
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
        tune=tune,
    )
