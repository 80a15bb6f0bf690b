"""The whole configuration (``ProjectConfig``) and the sections every command reads:
project, tracking, artifacts, data, datasets, pipeline and model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from shipml.config.deploy import (
    CISection,
    ContainersSection,
    DeploySection,
    KubeflowSection,
    ServerSection,
)
from shipml.config.section import Section
from shipml.config.serving import (
    AuditSection,
    HttpSection,
    MonitorSection,
    RolloutSection,
    ServingSection,
    TracingSection,
)
from shipml.config.testing import GatesSection, ScoreSection, TestsSection
from shipml.config.tuning import TuneSection
from shipml.errors import ConfigError


class ProjectSection(Section):
    name: str = "project"
    description: str = ""


class TrackingSection(Section):
    """Where MLflow keeps runs and the model registry."""

    uri: str = "sqlite:///.shipml/mlflow.db"
    registry_uri: str = ""  # empty: same as uri
    experiment: str = ""  # empty: the project name
    # A tracking server's calls give up after this many seconds (no retries).
    timeout_s: float = Field(default=5.0, gt=0.0)


class ArtifactsSection(Section):
    """Where artifacts (dataset snapshots, run artifacts, model packages) are stored."""

    root: str = ".shipml/artifacts"


class DataSection(Section):
    """Limits of every data source read (``shipml data add``, the pipeline's datasets)."""

    max_bytes: int = Field(default=1 << 30, ge=1)  # after decompression
    max_rows: int = Field(default=10_000_000, ge=1)
    max_line_bytes: int = Field(default=1 << 20, ge=64)  # CSV: the longest line
    allow_http: bool = False  # http(s):// sources


class DatasetSection(Section):
    source: str
    description: str = ""


class PipelineSection(Section):
    file: str = "pipeline.py"
    name: str = ""  # empty: the only @pipeline in the file
    cache_dir: str = ".shipml/cache"
    params: dict[str, Any] = Field(default_factory=dict)


class ModelSection(Section):
    name: str = ""  # empty: the project name
    target: str = ""
    # Fully-qualified types a skops fallback file may contain. Never read from the file.
    trusted_types: list[str] = Field(default_factory=list)
    parity_tolerance: float = 1e-4


class ProjectConfig(Section):
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

    def inside(self, value: str, setting: str, *, links: bool = True) -> Path:
        """A path setting that shipml writes to, resolved against the project root
        (symbolic links followed, unless not ``links``: then a link the user made in the
        project, such as a test image's ``results`` -> ``/results`` volume, is theirs to
        point anywhere); it must lie inside the project, so that a shipml.toml cannot
        make a command write anywhere else on the machine."""
        if links:
            root, path = self.root.resolve(), self.path(value).resolve()
        else:
            root = Path(os.path.abspath(self.root))
            path = Path(os.path.abspath(self.path(value)))
        if path == root or not path.is_relative_to(root):
            where = "is the project folder itself" if path == root else "is outside the project"
            raise ConfigError(
                f"{setting} = {value!r} resolves to {path}, which {where} ({root})",
                hint=f"set {setting} to a folder inside the project (a relative path, no "
                f"'..' out of it{', no symbolic link out of it' if links else ''}), or name "
                "the folder on the command line (--output) to write elsewhere",
            )
        return path

    @property
    def tests_output(self) -> Path:
        """Where ``shipml test`` writes its results by default ([tests] output)."""
        return self.inside(self.tests.output, "[tests] output", links=False)

    @property
    def monitor_output(self) -> Path:
        """Where ``shipml monitor`` writes by default ([monitor] output)."""
        return self.inside(self.monitor.output, "[monitor] output", links=False)

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
