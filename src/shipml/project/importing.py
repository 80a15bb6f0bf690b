"""``shipml models import``: an ONNX graph exported elsewhere, packaged, tracked as a run,
registered and recorded in the audit log, like a model a pipeline trained."""

from __future__ import annotations

import getpass
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shipml.audit import record_event
from shipml.config import ProjectConfig
from shipml.data import table_profile
from shipml.errors import ModelError
from shipml.model import ModelPackage
from shipml.model.imported import import_onnx
from shipml.model.signature import is_tensor
from shipml.tracking import Registry, VersionInfo, tracker_for

MAX_VALIDATION_BYTES = 512 * 1024**2


@dataclass
class Imported:
    package: ModelPackage
    version: VersionInfo
    created: bool
    run_id: str


def read_rows(file: Path) -> pd.DataFrame:
    """The validation rows (Parquet), with a clear error for anything else."""
    if not file.is_file():
        raise ModelError(f"no validation file at {file}", hint="give a Parquet file of rows")
    if file.stat().st_size > MAX_VALIDATION_BYTES:
        raise ModelError(
            f"{file} is larger than 512 MB", hint="a few thousand held-out rows are enough"
        )
    try:
        return pd.read_parquet(file)
    except Exception as exc:  # pyarrow raises many kinds for a file that is not Parquet
        raise ModelError(
            f"cannot read {file} as Parquet: {str(exc)[:200]}",
            hint="write the rows with DataFrame.to_parquet (one column per feature)",
        ) from exc


def _record(
    config: ProjectConfig, name: str, alias: str | None, version: VersionInfo, pkg: ModelPackage
) -> None:
    record_event(
        config,
        {
            "event": "import",
            "model": name,
            "version": version.version,
            "alias": alias,
            "onnx_sha256": pkg.onnx_sha256,
            "source_sha256": pkg.manifest["imported"]["sha256"],
            "by": getpass.getuser(),
        },
    )


def import_model(
    config: ProjectConfig,
    onnx_file: Path,
    signature_file: Path,
    validation_file: Path,
    *,
    labels: str | None = None,
    name: str | None = None,
    alias: str | None = None,
) -> Imported:
    """Package, log as an MLflow run, register as ``name`` (default ``[model] name``) and
    point ``alias`` at it (an unprotected alias such as challenger; champion moves only
    through `shipml promote`)."""
    if alias is not None and alias in config.gates.protect:
        raise ModelError(
            f"{alias!r} is protected: it moves only through the gates",
            hint="import with --alias challenger, then `shipml promote NAME@challenger`",
        )
    rows = read_rows(validation_file)
    name = name or config.model_name
    tracker = tracker_for(config)
    run_id = tracker.start_run("import", {"shipml.import": onnx_file.name})
    status = "FAILED"
    try:
        with tempfile.TemporaryDirectory(prefix="shipml-import-") as tmp:
            scalar = [c for c in rows.columns if c != labels and not is_tensor(rows[c])]
            package = import_onnx(
                onnx_file,
                signature_file,
                rows,
                labels=labels,
                path=Path(tmp) / "model",
                lineage={"run_id": run_id, "imported": onnx_file.name},
                reference_profile=table_profile(rows[scalar]),
            )
            tracker.log_artifacts(run_id, package.path, "model")
            digest = package.model_digest
            tags = {"shipml.onnx_sha256": package.onnx_sha256 or "", "shipml.format": "onnx"}
            registry = Registry(tracker)
            version, created = registry.register(
                name,
                run_id=run_id,
                source=f"{tracker.artifact_uri(run_id)}/model",
                content_digest=digest,
                tags={**tags, "shipml.run_id": run_id, "shipml.imported": "true"},
            )
            package = ModelPackage.load(registry.local_path(version))
        status = "FINISHED"
    finally:
        tracker.end_run(run_id, status)
    if alias is not None:  # unprotected (checked above); still through the one rule
        from shipml.project.promotion import set_alias

        set_alias(config, name, version.version, alias)
        version = registry.resolve(version.ref)
    _record(config, name, alias, version, package)
    return Imported(package, version, created, run_id)
