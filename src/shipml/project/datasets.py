"""The dataset snapshots of a project as data (what `shipml data ls` and `shipml data show`
print, as a table or as JSON): nothing cut, every digest and path in full."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipml.data import DatasetStore

if TYPE_CHECKING:
    from shipml.config import ProjectConfig


def _store(config: ProjectConfig) -> DatasetStore:
    return DatasetStore(config.artifact_root, config.root)


def list_datasets(config: ProjectConfig) -> list[dict[str, Any]]:
    """Each dataset's latest snapshot: name, version, rows, columns, sha256, created, source."""
    keys = ("name", "version", "rows", "columns", "created", "source", "description")
    return [
        {**{k: getattr(s, k) for k in keys}, "sha256": s.digest} for s in _store(config).latest()
    ]


def describe_dataset(config: ProjectConfig, ref: str) -> dict[str, Any]:
    """One snapshot (``NAME`` or ``NAME@VERSION``): its record with schema and profile,
    where its data is stored, and every version of its name."""
    store = _store(config)
    snap = store.get(ref)
    record = snap.to_dict()
    record["sha256"] = record.pop("digest")
    return {
        "ref": snap.ref,
        **record,
        "stored": store.data_uri(snap),
        "versions": [
            {"version": v.version, "sha256": v.digest, "created": v.created}
            for v in store.versions(snap.name)
        ],
    }
