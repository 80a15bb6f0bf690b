"""Project configuration: ``shipml.toml`` read into a strict pydantic model.

Every setting has an embedded default (one machine, SQLite, local files) and can
be overridden by an environment variable named ``SHIPML_<SECTION>_<KEY>``, for
example ``SHIPML_TRACKING_URI=postgresql://...``. An unknown key, in the file or
in the environment, is an error that names the key and the closest valid one.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shipml.errors import ConfigError

CONFIG_FILE = "shipml.toml"
ENV_PREFIX = "SHIPML_"
# Environment variables that are not settings (read elsewhere).
ENV_NOT_SETTINGS = frozenset(
    {"SHIPML_DEBUG", "SHIPML_PROJECT", "SHIPML_SERVE_SPEC", "SHIPML_CHROMIUM"}
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProjectSection(_Section):
    name: str = "project"
    description: str = ""


class TrackingSection(_Section):
    """Where MLflow keeps runs and the model registry."""

    uri: str = "sqlite:///.shipml/mlflow.db"
    registry_uri: str = ""  # empty: same as uri
    experiment: str = ""  # empty: the project name
    # A tracking server's calls give up after this many seconds (no retries).
    timeout_s: float = Field(default=5.0, gt=0.0)


class ArtifactsSection(_Section):
    """Where artifacts (dataset snapshots, run artifacts, model packages) are stored."""

    root: str = ".shipml/artifacts"


class DataSection(_Section):
    """Limits of every data source read (``shipml data add``, the pipeline's datasets)."""

    max_bytes: int = Field(default=1 << 30, ge=1)  # after decompression
    max_rows: int = Field(default=10_000_000, ge=1)
    max_line_bytes: int = Field(default=1 << 20, ge=64)  # CSV: the longest line
    allow_http: bool = False  # http(s):// sources


class DatasetSection(_Section):
    source: str
    description: str = ""


class PipelineSection(_Section):
    file: str = "pipeline.py"
    name: str = ""  # empty: the only @pipeline in the file
    cache_dir: str = ".shipml/cache"
    params: dict[str, Any] = Field(default_factory=dict)


class ModelSection(_Section):
    name: str = ""  # empty: the project name
    target: str = ""
    # Fully-qualified types a skops fallback file may contain. Never read from the file.
    trusted_types: list[str] = Field(default_factory=list)
    parity_tolerance: float = 1e-4


class ServingSection(_Section):
    """The model server (``shipml serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_batch_size: int = Field(default=64, ge=1)
    # Extra time to wait for more requests before a batch runs; 0 batches only what is
    # already queued (adaptive: no wait for a lone client).
    max_wait_ms: float = Field(default=0.0, ge=0.0)
    graceful_shutdown_s: float = Field(default=10.0, ge=0.0)
    # The V2 gRPC service (needs shipml[grpc]) on this port, beside HTTP; unset: no gRPC.
    grpc_port: int | None = Field(default=None, ge=0, le=65535)


class HttpSection(_Section):
    """Connection deadlines and the head-size cap of every shipml HTTP server (the model
    server and the gateway); see docs/security.md."""

    idle_timeout_s: float = Field(default=5.0, gt=0.0)  # no request on an open connection
    header_timeout_s: float = Field(default=10.0, gt=0.0)  # first byte to end of headers
    body_timeout_s: float = Field(default=30.0, gt=0.0)  # end of headers to end of body
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)  # request line + headers


class AuditSection(_Section):
    """The tamper-evident audit log of predictions and lifecycle events (docs/audit.md)."""

    enabled: bool = True
    path: str = ".shipml/audit/audit.db"
    # Ed25519 private key (PEM) that signs checkpoints; created if missing. Keep it where
    # whoever can write the log cannot read it.
    signing_key: str = ".shipml/audit/signing.key"
    # The verifying key's fingerprint ("sha256:<hex>"); written here when the key is
    # created. `shipml audit verify` trusts no other key.
    key_fingerprint: str = Field(default="", pattern=r"^(sha256:[0-9a-f]{64})?$")
    # head.json (the newest signed checkpoint) and public.pem.
    checkpoint_dir: str = ".shipml/audit/checkpoints"
    # A checkpoint is signed every this many records and at least this often while
    # records arrive: the unsigned tail is at most one cadence.
    checkpoint_every: int = Field(default=10_000, ge=1)
    checkpoint_interval_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    # process: a record is in the OS before the answer (safe against kill -9);
    # power: fsynced before the answer (safe against power loss).
    durability: Literal["process", "power"] = "process"
    # Extra time a commit waits for more records (0: only what is already queued).
    commit_window_ms: float = Field(default=0.0, ge=0.0, le=1000.0)
    # False: a record keeps the sha256 of the request body instead of the model's input.
    store_inputs: bool = True
    # Digest of the image the server runs in, when known (set by the container).
    image_digest: str = ""


class RolloutSection(_Section):
    """The gateway (``shipml gateway``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Bearer token for /v1/rollout/promote and /rollback; empty turns them off.
    admin_token: str = ""
    # Bearer token for /v1/feedback (the admin token works too); empty turns it off.
    feedback_token: str = ""
    # A label counts only for a prediction the gateway answered at most this long ago.
    feedback_window_s: float = Field(default=86_400.0, gt=0.0)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)  # every endpoint
    # Key shared with the model servers to attest the variant they record (made if missing).
    attestation_key: str = ".shipml/rollout/attestation.key"
    # The traffic policy (each can be given on the command line instead).
    mode: str = "single"  # single | shadow | ab | canary
    champion: str = ""  # NAME=URL of a `shipml serve`, or NAME=REF to host it in process
    challengers: list[str] = Field(default_factory=list)
    shadow_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    weights: dict[str, float] = Field(default_factory=dict)  # ab
    sticky: str = ""  # header:NAME or field:NAME
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])  # canary
    min_samples: int = Field(default=200, ge=1)
    interval_s: float = Field(default=5.0, gt=0.0)


DriftMethod = Literal["auto", "ks", "wasserstein", "chisquare", "z", "jensenshannon", "psi"]


class FeatureMonitorSpec(_Section):
    """How one feature's drift is judged (``[monitor.features.NAME]``)."""

    method: DriftMethod = "auto"  # auto: chosen by the reference's size (docs/monitoring.md)
    threshold: float | None = Field(default=None, gt=0.0)  # None: the method's default
    enabled: bool = True  # false: the feature is not tested (it is still shown)


class MonitorSection(_Section):
    """Drift and quality monitoring (``shipml monitor``, the server's live metrics)."""

    ref: str = ""  # the model monitored by default; empty: <model>@champion
    since: str = "24h"  # the period read from the audit log (e.g. 30m, 1h, 7d)
    window: str = ""  # split the period into windows (10m, 1h... or a number of rows)
    output: str = "monitor"  # where monitor.json and monitor.html are written
    # A dataset drifts when at least this share of its tested features drift (Evidently's
    # DataDriftPreset default).
    drift_share: float = Field(default=0.5, gt=0.0, le=1.0)
    # Above this many reference rows, distances (Wasserstein, Jensen-Shannon) replace the
    # p-value tests (KS, chi-squared): with large samples every tiny change is significant.
    large_reference: int = Field(default=1000, ge=1)
    features: dict[str, FeatureMonitorSpec] = Field(default_factory=dict)
    prediction: FeatureMonitorSpec = Field(default_factory=FeatureMonitorSpec)
    min_rows: int = Field(default=30, ge=1)  # a window with fewer rows is not judged
    max_missing_increase: float = Field(default=0.1, ge=0.0, le=1.0)  # share, absolute
    max_unseen_share: float = Field(default=0.05, ge=0.0, le=1.0)  # unseen categories
    max_out_of_range_share: float = Field(default=0.1, ge=0.0, le=1.0)
    # Quality from feedback labels: classification metrics (accuracy, f1_macro) may drop at
    # most this much below the hold-out's; regression errors (mae, rmse) may grow at most
    # this fraction above the hold-out's.
    max_quality_drop: float = Field(default=0.05, ge=0.0)
    min_labels: int = Field(default=30, ge=1)  # fewer labels: quality is shown, not judged
    # What a breach does: fail (exit code 16) or retrain (snapshot, run, test, promote).
    on_breach: Literal["fail", "retrain"] = "fail"
    dataset: str = ""  # the dataset snapshotted again to retrain; empty: the only one
    # The model server's live drift and quality on /metrics.
    live: bool = True
    live_window_s: float = Field(default=300.0, gt=0.0)  # the recent traffic compared
    live_interval_s: float = Field(default=5.0, gt=0.0)  # how often the scores update


class TracingSection(_Section):
    """OpenTelemetry traces of the server and the gateway (docs/monitoring.md)."""

    # none | otlp (HTTP/protobuf) | console. The OTEL_TRACES_EXPORTER environment variable,
    # when set, wins (as do the other OTEL_* variables).
    exporter: Literal["none", "otlp", "console"] = "none"
    endpoint: str = ""  # OTLP/HTTP traces URL; empty: OTEL_EXPORTER_OTLP_ENDPOINT or default
    sampling_ratio: float = Field(default=1.0, ge=0.0, le=1.0)  # of requests traced
    service_name: str = ""  # empty: shipml-serve / shipml-gateway


class ContainersSection(_Section):
    """Container images (``shipml build``, ``shipml base build``); see docs/containers.md."""

    # The image every shipml image starts FROM. `shipml base build` makes an offline one
    # from Debian's packages (localhost/shipml-base:bookworm).
    base_image: str = "python:3.11-slim"
    engine: str = ""  # podman, docker or buildah; empty: the first of these found
    registry: str = "localhost"  # images are named REGISTRY/PROJECT-KIND:VERSION
    # Host files mounted into the build's RUN steps (podman and buildah only), e.g. a CA
    # bundle pip needs behind a TLS-inspecting proxy. A missing host file is skipped.
    build_volumes: list[str] = Field(
        default_factory=lambda: [
            "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"
        ]
    )


class DataTestsSection(_Section):
    """Ready-made data checks (`shipml test --suite data`); see docs/testing.md."""

    schema_check: bool = True  # the data matches the model's signature (pandera)
    ranges: dict[str, list[float]] = Field(default_factory=dict)  # column = [min, max]
    max_null_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    max_duplicate_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    min_class_fraction: float = Field(default=0.05, ge=0.0, le=1.0)  # label balance
    leakage: bool = True  # no held-out row is also a training row
    skew: bool = True  # training features and the serving path agree
    forbidden_features: list[str] = Field(default_factory=list)  # e.g. names, e-mails


class InvarianceSpec(_Section):
    """A change that should not move predictions: ``shift`` a numeric feature, set a
    ``value``, or ``shuffle`` the column (exactly one)."""

    feature: str
    shift: float | None = None
    value: str | float | None = None
    shuffle: bool = False
    min_agreement: float = Field(default=1.0, ge=0.0, le=1.0)
    rtol: float = Field(default=1e-3, ge=0.0)  # regressors: "unchanged" within this

    @model_validator(mode="after")
    def _one_change(self) -> InvarianceSpec:
        given = [self.shift is not None, self.value is not None, self.shuffle]
        if sum(given) != 1:
            raise ValueError("give exactly one of shift, value or shuffle = true")
        return self


class DirectionalSpec(_Section):
    """Changing ``feature`` by ``shift`` moves the prediction: the probability of
    ``label`` for a classifier, the value for a regressor."""

    feature: str
    shift: float
    direction: Literal["increase", "decrease"] = "increase"
    label: str | None = None  # required for classifiers
    min_fraction: float = Field(default=0.9, ge=0.0, le=1.0)


class ModelTestsSection(_Section):
    """Ready-made model checks (`shipml test --suite model`); see docs/testing.md."""

    min: dict[str, float] = Field(default_factory=dict)  # accuracy, f1_macro, roc_auc_ovr
    max: dict[str, float] = Field(default_factory=dict)  # rmse, mae
    baseline_margin: float = 0.0  # must beat the dummy baseline by this much
    simpler_tolerance: float = 0.0  # may trail a simpler model by at most this much
    slices: list[str] = Field(default_factory=list)  # categorical or numeric (binned)
    sensitive: list[str] = Field(default_factory=list)  # slices checked for inclusion
    slice_bins: int = Field(default=4, ge=2)
    min_slice_rows: int = Field(default=10, ge=1)
    max_slice_gap: float = Field(default=0.15, ge=0.0)
    max_calibration_error: float = Field(default=0.1, ge=0.0)
    invariance: list[InvarianceSpec] = Field(default_factory=list)
    directional: list[DirectionalSpec] = Field(default_factory=list)
    simpler: bool = True  # compare with a simpler model (needs the training rows)
    missing_values: bool = True
    min_feature_importance: float | None = None  # None: importance not checked
    latency_budget_ms: float = Field(default=10.0, gt=0.0)  # p95 of a one-row prediction
    max_age_days: float = Field(default=180.0, gt=0.0)
    canary: bool = True  # rehearse a canary, online analysis and rollback in the gateway


class ApiTestsSection(_Section):
    """Checks against a running server (`shipml test --suite api [--against URL]`)."""

    requests: int = Field(default=400, ge=1)  # the short load test
    concurrency: int = Field(default=8, ge=1)
    max_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    max_p95_ms: float = Field(default=100.0, gt=0.0)
    golden: str = ""  # JSON file of golden requests; empty: the package's holdout rows
    golden_rows: int = Field(default=50, ge=1)


class TestsSection(_Section):
    """`shipml test`: which model, which suites, where the results go."""

    ref: str = ""  # the model tested by default (REF); empty: the newest registered version
    suites: list[str] = Field(default_factory=lambda: ["unit", "data", "model", "api", "browser"])
    paths: list[str] = Field(default_factory=lambda: ["tests"])  # the project's own tests
    output: str = "results"
    data: DataTestsSection = Field(default_factory=DataTestsSection)
    model: ModelTestsSection = Field(default_factory=ModelTestsSection)
    api: ApiTestsSection = Field(default_factory=ApiTestsSection)


class GatesSection(_Section):
    """What `shipml promote` demands of a version before it becomes champion."""

    suites: list[str] = Field(default_factory=lambda: ["data", "model"])  # all passed
    # Aliases that only `shipml promote` (gates, or --force --reason) may move; `shipml run
    # --alias` and `shipml models alias` go through the same gates for them.
    protect: list[str] = Field(default_factory=lambda: ["champion"])
    # metric = bound; a bound is a number or "champion", "champion - 0.005", ...
    min: dict[str, float | str] = Field(default_factory=dict)
    max: dict[str, float | str] = Field(default_factory=dict)


class TuneParam(_Section):
    """One dimension of the search space of `shipml tune`: an int or float range (``log``
    for a logarithmic scale, ``step`` for a grid), or a list of ``choices``."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    choices: list[str | int | float | bool] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> TuneParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty list of choices")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("a categorical parameter takes choices, not low/high/log")
            return self
        if self.choices is not None:
            raise ValueError(f"an {self.type} parameter takes low and high, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} parameter needs low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError("low and high must be finite numbers with low < high")
        if self.log and self.low <= 0:
            raise ValueError("a log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("give either log = true or a step, not both")
        if self.type == "int" and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError("an int parameter needs whole numbers for low and high")
        return self


class TuneSection(_Section):
    """`shipml tune`: the search over the pipeline's parameters (docs/experiments.md)."""

    metric: str = ""  # the objective: a metric the pipeline logs
    direction: Literal["maximize", "minimize"] = "maximize"
    budget: str = "10m"  # wall-clock budget of the search: 90s, 10m, 1h30m
    trials: int = Field(default=0, ge=0)  # at most this many trials; 0: as many as fit
    space: dict[str, TuneParam] = Field(default_factory=dict)
    # Pipeline parameters that are not hyperparameters (a seed, the split): not searched,
    # and not counted as untuned by `shipml score`.
    fixed: list[str] = Field(default_factory=list)
    study: str = ""  # empty: the project name
    # Optuna's storage; empty: next to the MLflow store (PostgreSQL: the same database,
    # schema "optuna"; SQLite: optuna.db beside the MLflow file).
    storage: str = ""
    seed: int = 0  # the TPE sampler's seed
    pruner: Literal["median", "none"] = "median"
    # The registered best trial is never worse than the defaults on this hold-out metric
    # (empty: no guard). Its direction is the objective's.
    holdout_metric: str = ""
    # The winning trial is trained again from scratch; its metrics must match within this.
    reproducibility_tolerance: float = Field(default=1e-6, ge=0.0)


class ScoreSection(_Section):
    """`shipml score`: ML Test Score tests run by hand, with the document of their results
    (test id = path), e.g. "data-5" = "docs/privacy-review.md"."""

    manual: dict[str, str] = Field(default_factory=dict)


class DeployEnvSection(_Section):
    """One environment of ``shipml deploy`` (dev, staging, prod): sizes and traffic policy."""

    replicas: int = Field(default=1, ge=1)  # the autoscalers' minimum (servers, gateway)
    max_replicas: int = Field(default=2, ge=1)  # HorizontalPodAutoscaler ceiling
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    # The gateway's traffic policy here: single | shadow | ab | canary. Any mode but
    # single deploys the challenger too.
    mode: str = "single"
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


class DeploySection(_Section):
    """Kubernetes manifests (``shipml deploy``): a kustomize base and one overlay per env."""

    output: str = "deploy"  # where `shipml deploy render` writes the kustomize tree
    kubernetes_version: str = "1.32"  # the OpenAPI schema every object is checked against
    namespace: str = ""  # empty: <project>-<env>
    # Images: <registry>/<project>-serve:<model version>, -test:<model version>.
    image_registry: str = "localhost"
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


class StepResources(_Section):
    cpu_request: str = ""
    cpu_limit: str = ""
    memory_request: str = ""
    memory_limit: str = ""


class KubeflowSection(_Section):
    """``shipml pipeline compile --target kubeflow``."""

    image: str = ""  # empty: <deploy.image_registry>/<project>-train:<image_tag>
    image_tag: str = "latest"
    caching: bool = True  # KFP caching for steps whose @step has cache=True
    resources: dict[str, StepResources] = Field(default_factory=dict)  # per step name


class CISection(_Section):
    """``shipml ci init`` and ``shipml ci run``."""

    provider: str = "github"  # github | gitlab
    python: str = "3.11"
    # How a CI job installs shipml; empty: the exact version and source that generated the
    # workflow (a wheel `shipml ci init` builds into ci/, a git URL, or an index).
    install: str = ""
    index_url: str = ""  # install shipml==VERSION from this package index
    branch: str = "main"  # deploys and promotions happen from this branch only
    target: str = "kubernetes"  # where the generated workflows deploy
    local_target: str = "podman"  # where `shipml ci run` deploys
    # The staging gateway the analysis stage reads (default: staging on podman, here).
    staging_gateway: str = "http://127.0.0.1:8001"


class ServerSection(_Section):
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


class ProjectConfig(_Section):
    project: ProjectSection = Field(default_factory=ProjectSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    artifacts: ArtifactsSection = Field(default_factory=ArtifactsSection)
    datasets: dict[str, DatasetSection] = Field(default_factory=dict)
    data: DataSection = Field(default_factory=DataSection)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    model: ModelSection = Field(default_factory=ModelSection)
    serving: ServingSection = Field(default_factory=ServingSection)
    http: HttpSection = Field(default_factory=HttpSection)
    audit: AuditSection = Field(default_factory=AuditSection)
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    containers: ContainersSection = Field(default_factory=ContainersSection)
    tests: TestsSection = Field(default_factory=TestsSection)
    gates: GatesSection = Field(default_factory=GatesSection)
    score: ScoreSection = Field(default_factory=ScoreSection)
    tune: TuneSection = Field(default_factory=TuneSection)
    deploy: DeploySection = Field(default_factory=DeploySection)
    kubeflow: KubeflowSection = Field(default_factory=KubeflowSection)
    ci: CISection = Field(default_factory=CISection)
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    tracing: TracingSection = Field(default_factory=TracingSection)
    server: ServerSection = Field(default_factory=ServerSection)

    # Set by load_config; not a setting.
    root: Path = Field(default_factory=Path.cwd, exclude=True)

    # -- resolved values ---------------------------------------------------------
    def path(self, value: str) -> Path:
        """A path setting resolved against the project root."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def tracking_uri(self) -> str:
        return _resolve_uri(self.tracking.uri, self.root)

    @property
    def registry_uri(self) -> str:
        return _resolve_uri(self.tracking.registry_uri or self.tracking.uri, self.root)

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.project.name

    @property
    def model_name(self) -> str:
        return self.model.name or self.project.name

    @property
    def artifact_root(self) -> str:
        """The artifact store as a URL fsspec understands (a local path stays a path)."""
        root = self.artifacts.root
        if "://" in root:
            return root.rstrip("/")
        return str(self.path(root))

    @property
    def cache_dir(self) -> Path:
        return self.path(self.pipeline.cache_dir)


def _resolve_uri(uri: str, root: Path) -> str:
    """Make a relative ``sqlite:///relative.db`` URI absolute against the project root."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        rel = uri[len(prefix) :]
        if rel != ":memory:":
            return prefix + str((root / rel).resolve())
    return uri


# -- loading ---------------------------------------------------------------------------


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding a shipml.toml; without ``start``,
    ``SHIPML_PROJECT`` or else the current directory is where the search begins."""
    env = os.environ.get("SHIPML_PROJECT")
    if env and start is None:
        root = Path(env).expanduser().resolve()
        if not (root / CONFIG_FILE).is_file():
            raise ConfigError(
                f"SHIPML_PROJECT={env!r} has no {CONFIG_FILE}",
                hint="point SHIPML_PROJECT at a folder made by `shipml init`, or unset it",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or any folder above it",
        hint="run `shipml init NAME` to create a project, or cd into one",
    )


def load_config(
    root: Path | None = None, *, environ: dict[str, str] | None = None
) -> ProjectConfig:
    """Read ``shipml.toml`` under ``root`` (found upwards from cwd if omitted), then apply
    ``SHIPML_<SECTION>_<KEY>`` environment overrides."""
    root = find_root() if root is None else root.resolve()
    file = root / CONFIG_FILE
    data: dict[str, Any] = {}
    if file.is_file():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{file} is not valid TOML: {exc}", hint="fix the line named above"
            ) from exc
    origins = _apply_env(data, os.environ if environ is None else environ)
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, file, origins) from exc
    config.root = root
    return config


def _apply_env(data: dict[str, Any], environ: Any) -> dict[tuple[str, str], str]:
    """Apply SHIPML_* overrides to ``data``; returns which keys came from which variable."""
    origins: dict[tuple[str, str], str] = {}
    sections = {
        name: field.annotation
        for name, field in ProjectConfig.model_fields.items()
        if name not in {"root", "datasets"}
    }
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var in ENV_NOT_SETTINGS:
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        for section, model in sections.items():
            if not rest.startswith(section + "_"):
                continue
            key = rest[len(section) + 1 :]
            fields = model.model_fields  # type: ignore[union-attr]
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1)
                valid = f"{ENV_PREFIX}{section.upper()}_{close[0].upper()}" if close else None
                raise ConfigError(
                    f"unknown setting in environment variable {var}",
                    hint=f"did you mean {valid}?" if valid else _valid_env(section, fields),
                )
            wants_text = fields[key].annotation is str
            data.setdefault(section, {})[key] = raw if wants_text else _parse_env_value(raw)
            origins[(section, key)] = var
            break
        else:
            names = [f"{ENV_PREFIX}{s.upper()}_..." for s in sections]
            raise ConfigError(
                f"unknown setting in environment variable {var}",
                hint="settings are named " + ", ".join(names),
            )
    return origins


def _valid_env(section: str, fields: dict[str, Any]) -> str:
    return "valid: " + ", ".join(f"{ENV_PREFIX}{section.upper()}_{k.upper()}" for k in fields)


def _parse_env_value(raw: str) -> Any:
    """JSON where it parses (numbers, booleans, lists, objects), the plain string otherwise."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _config_error(
    exc: ValidationError, file: Path, origins: dict[tuple[str, str], str]
) -> ConfigError:
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(loc)
    if err["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(valid)}"
        return ConfigError(f"unknown key '{dotted}' in {file}", hint=hint)
    if err["type"] == "missing":
        return ConfigError(
            f"missing key '{dotted}' in {file}",
            hint=f"add {loc[-1]} = ... under [{'.'.join(loc[:-1])}]",
        )
    value = err.get("input")
    where = origins.get((loc[0], loc[1])) if len(loc) >= 2 else None
    place = f"environment variable {where}" if where else str(file)
    return ConfigError(
        f"invalid value for '{dotted}' in {place}: {err['msg']} (got {value!r})",
        hint="see docs/config.md for every setting and its type",
    )


def _valid_keys(parent: list[str]) -> list[str]:
    """The keys allowed at a location such as ``[]``, ``["tracking"]``, ``["tests", "data"]``
    or ``["datasets", "x"]``."""
    if not parent:
        return [k for k in ProjectConfig.model_fields if k != "root"]
    if parent[0] == "datasets" and len(parent) == 2:
        return list(DatasetSection.model_fields)
    model: Any = ProjectConfig
    keyed = False  # the next part is a key of a table of tables ([tune.space.NAME])
    for part in parent:
        if keyed or isinstance(part, int) or part.isdigit():  # an item of a list of tables
            keyed = False
            continue
        field = model.model_fields.get(part)
        model = field.annotation if field is not None else None
        if get_origin(model) is list:
            model = get_args(model)[0]
        elif get_origin(model) is dict:
            model, keyed = get_args(model)[1], True
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                return []
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)
