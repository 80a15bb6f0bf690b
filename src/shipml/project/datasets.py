"""The dataset snapshots of a project as data (what `shipml data ls` and `shipml data show`
print, as a table or as JSON): nothing cut, every digest and path in full."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipml.data import DatasetStore, parse_ref
from shipml.errors import DataError

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


def verify_dataset(config: ProjectConfig, ref: str) -> dict[str, Any]:
    """Read a snapshot from the store with its digest recomputed (`shipml data verify
    NAME[@VERSION]`): a changed or unreadable ``data.parquet`` is a DataError."""
    store = _store(config)
    name, _ = parse_ref(ref)
    if name not in store.names():
        known = ", ".join(store.names()) or "none yet"
        raise DataError(
            f"{ref!r} is neither a data bundle folder nor a dataset in the store "
            f"(datasets: {known})",
            hint="give a folder written by `shipml data export`, or NAME[@VERSION] of a "
            "dataset added with `shipml data add`",
        )
    snap = store.get(ref)
    df = store.load(snap, verify=True)
    return {"ref": snap.ref, "rows": len(df), "sha256": snap.digest, "stored": store.data_uri(snap)}
