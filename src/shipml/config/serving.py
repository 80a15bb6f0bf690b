"""Settings of the running system: the model server, its HTTP limits, the audit log, the
gateway, monitoring and tracing."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shipml.config.section import Section


class ServingSection(Section):
    """The model server (``shipml serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Request bodies held at once, being read or scored, over every connection; a body
    # that would pass it is a 503 (slow clients holding nearly-sent bodies cannot fill
    # memory). Unset: 8 × max_body_bytes.
    max_buffered_bytes: int | None = Field(default=None, ge=1024)
    max_batch_size: int = Field(default=64, ge=1)
    # Extra time to wait for more requests before a batch runs; 0 batches only what is
    # already queued (adaptive: no wait for a lone client).
    max_wait_ms: float = Field(default=0.0, ge=0.0)
    graceful_shutdown_s: float = Field(default=10.0, ge=0.0)
    # The V2 gRPC service (needs shipml[grpc]) on this port, beside HTTP; unset: no gRPC.
    grpc_port: int | None = Field(default=None, ge=0, le=65535)


# A host name or address for ``allowed_hosts`` (no port: any port), or "*".
HostName = Annotated[str, Field(pattern=r"^(\*|\[?[A-Za-z0-9._:-]+\]?)$")]


class HttpSection(Section):
    """Connection deadlines and the head-size cap of every shipml HTTP server (the model
    server and the gateway); see docs/security.md."""

    idle_timeout_s: float = Field(default=5.0, gt=0.0)  # no request on an open connection
    header_timeout_s: float = Field(default=10.0, gt=0.0)  # first byte to end of headers
    body_timeout_s: float = Field(default=30.0, gt=0.0)  # end of headers to end of body
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)  # request line + headers
    # A server bound to loopback answers only requests naming localhost or a loopback
    # address (Host; DNS rebinding). Other names it answers too: a reverse proxy's site
    # name on this machine, say; "*" answers any.
    allowed_hosts: list[HostName] = Field(default_factory=list)


class AuditSection(Section):
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


TrafficMode = Literal["single", "shadow", "ab", "canary"]


class RolloutSection(Section):
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
    mode: TrafficMode = "single"
    champion: str = ""  # NAME=URL of a `shipml serve`, or NAME=REF to host it in process
    challengers: list[str] = Field(default_factory=list)
    shadow_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    weights: dict[str, float] = Field(default_factory=dict)  # ab
    sticky: str = ""  # header:NAME or field:NAME
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])  # canary
    min_samples: int = Field(default=200, ge=1)
    interval_s: float = Field(default=5.0, gt=0.0)


DriftMethod = Literal["auto", "ks", "wasserstein", "chisquare", "z", "jensenshannon", "psi"]


class FeatureMonitorSpec(Section):
    """How one feature's drift is judged (``[monitor.features.NAME]``)."""

    method: DriftMethod = "auto"  # auto: chosen by the reference's size (docs/monitoring.md)
    threshold: float | None = Field(default=None, gt=0.0)  # None: the method's default
    enabled: bool = True  # false: the feature is not tested (it is still shown)


class MonitorSection(Section):
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
    # ...and beyond the bound breaches only when the window's sampling alone would give
    # so large a loss less often than this (one-sided p-value); 1 judges by the bound only.
    quality_alpha: float = Field(default=0.05, gt=0.0, le=1.0)
    # What a breach does: fail (exit code 16) or retrain (snapshot, run, test, promote).
    on_breach: Literal["fail", "retrain"] = "fail"
    dataset: str = ""  # the dataset snapshotted again to retrain; empty: the only one
    # The model server's live drift and quality on /metrics.
    live: bool = True
    live_window_s: float = Field(default=300.0, gt=0.0)  # the recent traffic compared
    live_interval_s: float = Field(default=5.0, gt=0.0)  # how often the scores update


class TracingSection(Section):
    """OpenTelemetry traces of the server and the gateway (docs/monitoring.md)."""

    # none | otlp (HTTP/protobuf) | console. The OTEL_TRACES_EXPORTER environment variable,
    # when set, wins (as do the other OTEL_* variables).
    exporter: Literal["none", "otlp", "console"] = "none"
    endpoint: str = ""  # OTLP/HTTP traces URL; empty: OTEL_EXPORTER_OTLP_ENDPOINT or default
    sampling_ratio: float = Field(default=1.0, ge=0.0, le=1.0)  # of requests traced
    service_name: str = ""  # empty: shipml-serve / shipml-gateway
