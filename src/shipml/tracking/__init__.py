"""Tracking and registry on MLflow: runs, dataset inputs, versions, aliases, lineage."""

from shipml.tracking.environment import environment, git_info, package_versions
from shipml.tracking.registry import ModelRef, Registry, VersionInfo, parse_model_ref
from shipml.tracking.store import Tracker, tracker_for

__all__ = [
    "ModelRef",
    "Registry",
    "Tracker",
    "VersionInfo",
    "environment",
    "git_info",
    "package_versions",
    "parse_model_ref",
    "tracker_for",
]
