"""One error base class for everything a user can get wrong.

Every error says what was wrong, the value seen, and what to do. The CLI turns a
``ShipmlError`` into its message, its hint and its exit code, without a traceback
(``shipml --debug`` shows the traceback too). Modelled on Click's exceptions: each
subsystem has its own class and exit code, so scripts can tell failures apart.
"""

from __future__ import annotations

from typing import Any


class ShipmlError(Exception):
    """Base class of every error shipml raises on purpose.

    ``message`` says what was wrong and the value seen; ``hint`` says what to do.
    """

    exit_code: int = 1
    kind: str = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(ShipmlError):
    """shipml.toml or a SHIPML_* environment variable is wrong, or no project was found."""

    exit_code = 3
    kind = "config error"


class ProjectError(ShipmlError):
    """Creating a project failed (for example ``shipml init`` into a non-empty folder)."""

    exit_code = 4
    kind = "project error"


class DataError(ShipmlError):
    """A data source cannot be read, parsed or snapshotted, or a snapshot is unknown or corrupt."""

    exit_code = 5
    kind = "data error"


class PipelineError(ShipmlError):
    """A pipeline cannot be loaded or built (wrong decorator use, unknown pipeline...)."""

    exit_code = 6
    kind = "pipeline error"


class StepFailed(PipelineError):
    """A pipeline step raised; its traceback is kept as an artifact of the run."""

    kind = "step failed"

    def __init__(self, step: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.step = step


class TrackingError(ShipmlError):
    """The MLflow store cannot be reached or refuses an operation."""

    exit_code = 7
    kind = "tracking error"


class RegistryError(TrackingError):
    """A model reference (name@alias, name/version, folder) does not resolve."""

    kind = "registry error"


class ModelError(ShipmlError):
    """A model cannot be packaged, converted or loaded safely."""

    exit_code = 8
    kind = "model error"


class ParityError(ModelError):
    """The ONNX graph does not reproduce the original model's predictions."""

    kind = "parity error"


class UnsafeModelError(ModelError):
    """A model file would run code when loaded (pickle, joblib, cloudpickle...) and is refused."""

    kind = "unsafe model"


class AuditError(ShipmlError):
    """The audit log cannot be written or read, or it failed verification."""

    exit_code = 10
    kind = "audit error"


class DuplicateRecord(AuditError):
    """A record's request id (for its variant) is already in the audit log: request ids
    are the log's key, so the record is refused and the prediction is not answered."""

    kind = "duplicate request id"


class ContainerError(ShipmlError):
    """An image cannot be built or run: no container engine, a failed build, an image that
    is not there, or a base image that cannot be made."""

    exit_code = 15  # 11-14 are taken by testing, gates, deploy and CI (issues 5 and 7)
    kind = "container error"


class TestingError(ShipmlError):
    """A test suite or check cannot run (a tool is missing, a page or server misbehaves)."""

    __test__ = False  # not a pytest test class, despite its name
    exit_code = 11
    kind = "testing error"


class BrowserUnavailable(TestingError):
    """Headless Chromium or Playwright, needed for the browser tests, is missing."""

    kind = "browser unavailable"


class ServingError(ShipmlError):
    """A request the model server cannot answer; ``status`` is the HTTP status it maps to."""

    exit_code = 9
    kind = "serving error"
    status = 500


class InvalidRequest(ServingError):
    """The request does not match the protocol or the model's signature (HTTP 400)."""

    kind = "invalid request"
    status = 400


class ModelNotFound(ServingError):
    """The request names a model or version this server does not serve (HTTP 404)."""

    kind = "model not found"
    status = 404


class PayloadTooLarge(InvalidRequest):
    """A request body over the server's limit (HTTP 413); nothing past the limit is read."""

    kind = "payload too large"
    status = 413


class UnsupportedEncoding(InvalidRequest):
    """A request body in a Content-Encoding (gzip, ...) the server does not decode
    (HTTP 415)."""

    kind = "unsupported encoding"
    status = 415


class UnsupportedMediaType(InvalidRequest):
    """A request body in a Content-Type (or charset) the endpoint does not read (HTTP 415)."""

    kind = "unsupported media type"
    status = 415


class RequestConflict(ServingError):
    """The request's X-Request-ID was already answered (HTTP 409): request ids are the
    audit log's key, so a duplicate is refused rather than recorded twice."""

    kind = "request conflict"
    status = 409


class InferenceFailed(ServingError):
    """The model failed on input that passed validation (HTTP 500)."""

    kind = "inference failed"
    status = 500


class ServerBusy(ServingError):
    """The request bodies the server holds (being read or scored) would pass
    ``[serving] max_buffered_bytes`` with this one (HTTP 503): retry shortly."""

    kind = "server busy"
    status = 503


class GateFailed(ShipmlError):
    """A promotion gate does not hold (the message lists which, with the numbers;
    ``details["gates"]`` has every gate evaluated)."""

    exit_code = 12
    kind = "gate failed"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.details: dict[str, Any] = {}


class DeployError(ShipmlError):
    """Manifests cannot be rendered or fail the Kubernetes schema, or a deploy target
    (podman, kubernetes) refused them or did not become ready."""

    exit_code = 13
    kind = "deploy error"


class CIError(ShipmlError):
    """A CI workflow cannot be written, or a stage of `shipml ci run` failed."""

    exit_code = 14
    kind = "ci error"


class MonitorError(ShipmlError):
    """Monitoring found a breach: features drifted, predictions drifted or quality fell
    below its bound (``details`` holds the verdicts). CronJobs and CI act on exit 16."""

    exit_code = 16  # 1-15 are taken; 17 is the tuner's
    kind = "monitor breach"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.details: dict[str, Any] = {}


class DriftDetected(MonitorError):
    """The breach is drift (of features or predictions)."""

    kind = "drift detected"


class TuneError(ShipmlError):
    """`shipml tune` cannot search: a bad budget or search space, an objective the
    pipeline does not log, a study of another direction, or no trial finished in time."""

    exit_code = 17  # 16 is the monitor's (issue 14)
    kind = "tune error"


__all__ = [
    "AuditError",
    "BrowserUnavailable",
    "CIError",
    "ConfigError",
    "ContainerError",
    "DataError",
    "DeployError",
    "DriftDetected",
    "DuplicateRecord",
    "GateFailed",
    "InferenceFailed",
    "InvalidRequest",
    "ModelError",
    "ModelNotFound",
    "MonitorError",
    "ParityError",
    "PayloadTooLarge",
    "PipelineError",
    "ProjectError",
    "RegistryError",
    "RequestConflict",
    "ServingError",
    "ShipmlError",
    "StepFailed",
    "TestingError",
    "TrackingError",
    "TuneError",
    "UnsafeModelError",
    "UnsupportedEncoding",
    "UnsupportedMediaType",
]
