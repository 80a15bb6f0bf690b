"""Writing a package's files: the manifest's frame, the rows, profile and lineage, and the
seal (the sha256 of every file, written last). Reading is ``package.ModelPackage``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipml.files import sha256_file
from shipml.model.signature import Signature

if TYPE_CHECKING:
    import pandas as pd

MANIFEST = "package.json"
FORMAT_VERSION = 1


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8")


def new_manifest(**fields: Any) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **fields,
    }


def write_rest(
    folder: Path,
    frame: pd.DataFrame,
    y: Any,
    signature: Signature,
    manifest: dict[str, Any],
    lineage: dict[str, Any] | None,
    reference_profile: dict[str, Any] | None,
) -> None:
    """signature.json, holdout.parquet (with the labels ``y``), profile and lineage."""
    (folder / "signature.json").write_text(signature.to_json())
    holdout = frame.copy()
    for f in signature.features:  # Parquet keeps lists: a tensor row flattened (the
        if f.type == "tensor":  # signature holds its shape)
            holdout[f.name] = holdout[f.name].map(lambda v: np.asarray(v).reshape(-1))
    if y is not None:
        label = str(getattr(y, "name", None) or "label")
        if label in holdout.columns:
            label = f"{label}__label"
        holdout[label] = np.asarray(y)
        manifest["label"] = label
    holdout.reset_index(drop=True).to_parquet(folder / "holdout.parquet", index=False)
    (folder / "profile.json").write_bytes(json_bytes(reference_profile or {}))
    (folder / "lineage.json").write_bytes(json_bytes(lineage or {}))


def seal(folder: Path, manifest: dict[str, Any]) -> None:
    """The manifest, with the sha256 of every other file: written last."""
    manifest["files"] = {
        p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.name != MANIFEST
    }
    (folder / MANIFEST).write_bytes(json_bytes(manifest))
