"""A model package registered from the run that made it: one rule for the local runner
and for a pipeline that Kubeflow ran step by step (``shipml step register``).

The package is logged to the run under ``model/`` and registered under the project's
model name with its lineage as version tags; a package whose model digest is already
registered keeps its version (nothing is logged twice)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from shipml.tracking import VersionInfo, registry_of

if TYPE_CHECKING:
    from shipml.tracking.protocol import RunTracker


def register_package(
    tracker: RunTracker, name: str, run_id: str, path: Path
) -> tuple[VersionInfo, bool]:
    """Register the package folder ``path`` made by run ``run_id``; returns its version
    and whether it was created now."""
    from shipml.model import ModelPackage

    pkg = ModelPackage.load(path)
    registry = registry_of(tracker)
    existing = registry.find_by_digest(name, pkg.model_digest)
    if existing is not None:
        return existing, False
    tracker.log_artifacts(run_id, path, "model")
    lineage = pkg.lineage
    tags = {
        "shipml.onnx_sha256": pkg.onnx_sha256 or "",
        "shipml.format": pkg.format,
        "shipml.run_id": str(lineage.get("run_id") or run_id),
        "shipml.git_commit": str((lineage.get("git") or {}).get("commit") or ""),
    }
    for dname, info in (lineage.get("datasets") or {}).items():
        tags[f"shipml.dataset.{dname}.sha256"] = str(info.get("sha256"))
    source = f"{tracker.artifact_uri(run_id)}/model"
    return registry.register(
        name, run_id=run_id, source=source, content_digest=pkg.model_digest, tags=tags
    )
