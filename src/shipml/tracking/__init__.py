"""Tracking and registry on MLflow: runs, dataset inputs, versions, aliases, lineage."""

from shipml.tracking.environment import environment, git_info, package_versions
from shipml.tracking.reference import (
    ResolvedModel,
    registry_for,
    resolve_model,
    resolve_version,
)
from shipml.tracking.registry import (
    ModelRef,
    Registry,
    VersionInfo,
    check_alias,
    parse_model_ref,
    registry_of,
)
from shipml.tracking.store import Tracker, tracker_for

__all__ = [
    "ModelRef",
    "Registry",
    "ResolvedModel",
    "Tracker",
    "VersionInfo",
    "check_alias",
    "environment",
    "git_info",
    "package_versions",
    "parse_model_ref",
    "registry_for",
    "registry_of",
    "resolve_model",
    "resolve_version",
    "tracker_for",
]
