"""Project configuration: ``shipml.toml`` read into a strict pydantic model.

Every setting has an embedded default (one machine, SQLite, local files) and can
be overridden by an environment variable named ``SHIPML_<SECTION>_<KEY>``, for
example ``SHIPML_TRACKING_URI=postgresql://...``. An unknown key, in the file or
in the environment, is an error that names the key and the closest valid one.

One module per part: ``project`` (the whole model and the sections every command
reads), ``serving``, ``testing``, ``tuning``, ``deploy`` (the other sections) and
``loading`` (the file, the environment, the errors). Importing it has no side effect.
"""

from __future__ import annotations

from shipml.config.deploy import (
    ENV_DEFAULTS,
    CISection,
    ContainersSection,
    DeployEnvSection,
    DeploySection,
    KubeflowSection,
    ServerSection,
    StepResources,
)
from shipml.config.loading import (
    CONFIG_FILE,
    ENV_NOT_SETTINGS,
    ENV_PREFIX,
    find_root,
    load_config,
)
from shipml.config.project import (
    ArtifactsSection,
    DataSection,
    DatasetSection,
    ModelSection,
    PipelineSection,
    ProjectConfig,
    ProjectSection,
    TrackingSection,
)
from shipml.config.section import Section
from shipml.config.serving import (
    AuditSection,
    DriftMethod,
    FeatureMonitorSpec,
    HttpSection,
    MonitorSection,
    RolloutSection,
    ServingSection,
    TracingSection,
    TrafficMode,
)
from shipml.config.testing import (
    ApiTestsSection,
    DataTestsSection,
    DirectionalSpec,
    GatesSection,
    InvarianceSpec,
    ModelTestsSection,
    ScoreSection,
    TestsSection,
)
from shipml.config.tuning import TuneParam, TuneSection

__all__ = [
    "CONFIG_FILE",
    "ENV_DEFAULTS",
    "ENV_NOT_SETTINGS",
    "ENV_PREFIX",
    "ApiTestsSection",
    "ArtifactsSection",
    "AuditSection",
    "CISection",
    "ContainersSection",
    "DataSection",
    "DataTestsSection",
    "DatasetSection",
    "DeployEnvSection",
    "DeploySection",
    "DirectionalSpec",
    "DriftMethod",
    "FeatureMonitorSpec",
    "GatesSection",
    "HttpSection",
    "InvarianceSpec",
    "KubeflowSection",
    "ModelSection",
    "ModelTestsSection",
    "MonitorSection",
    "PipelineSection",
    "ProjectConfig",
    "ProjectSection",
    "RolloutSection",
    "ScoreSection",
    "Section",
    "ServerSection",
    "ServingSection",
    "StepResources",
    "TestsSection",
    "TracingSection",
    "TrackingSection",
    "TrafficMode",
    "TuneParam",
    "TuneSection",
    "find_root",
    "load_config",
]
