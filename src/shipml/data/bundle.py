"""A data bundle: one dataset snapshot as a plain folder that travels on its own.

::

    data.parquet    the table
    manifest.json   name, version, digest (shipml-table-v1, every row), schema, source,
                    and the sha256 of data.parquet

This is what the data image holds under ``/data``. Reading a bundle recomputes the
table's digest and compares it with the manifest; a mismatch is a ``DataError`` naming
both digests, so a changed file is never used by mistake.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from shipml.data.digest import FORMAT, table_digest
from shipml.data.snapshot import DatasetStore, Snapshot
from shipml.data.source import public_uri
from shipml.errors import DataError
from shipml.files import replacing_folder, sha256_file

BUNDLE_FORMAT = "shipml-data-bundle-v1"
MANIFEST = "manifest.json"
DATA_FILE = "data.parquet"


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    @property
    def ref(self) -> str:
        return f"{self.manifest['name']}@{self.manifest['version']}"


def write_bundle(store: DatasetStore, snap: Snapshot, folder: Path) -> Bundle:
    """Write ``snap`` (verified on the way out) as a bundle into ``folder`` (replaced)."""
    df = store.load(snap, verify=True)
    with replacing_folder(folder, prefix=".bundle-") as tmp:
        df.to_parquet(tmp / DATA_FILE, index=False)
        manifest = {
            "format": BUNDLE_FORMAT,
            "name": snap.name,
            "version": snap.version,
            "digest": snap.digest,
            "digest_format": snap.digest_format,
            "rows": snap.rows,
            "columns": snap.columns,
            "schema": snap.schema,
            "source": public_uri(snap.source),
            "created": snap.created,
            "files": {DATA_FILE: sha256_file(tmp / DATA_FILE)},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for file in tmp.iterdir():
            file.chmod(0o644)
        tmp.chmod(0o755)
    return Bundle(folder, manifest)


def open_bundle(folder: Path) -> Bundle:
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(
            f"{folder} is not a data bundle: it has no {MANIFEST}",
            hint="make one with `shipml data export NAME[@VERSION] FOLDER` or `shipml build data`",
        ) from exc
    except ValueError as exc:
        raise DataError(
            f"{manifest_path} is not valid JSON: {exc}",
            hint="the bundle is damaged; export it again",
        ) from exc
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("digest_format") != FORMAT:
        raise DataError(
            f"{manifest_path} has format {manifest.get('format')!r} / digest "
            f"{manifest.get('digest_format')!r}; this shipml reads {BUNDLE_FORMAT} / {FORMAT}",
            hint="export the bundle again with this version of shipml",
        )
    return Bundle(folder, manifest)


def read_bundle(folder: Path) -> tuple[Bundle, pd.DataFrame]:
    """The bundle's table, after checking its digest against the manifest."""
    bundle = open_bundle(folder)
    data = folder / DATA_FILE
    try:
        df = pd.read_parquet(data)
    except FileNotFoundError as exc:
        raise DataError(
            f"the data bundle {folder} lacks {DATA_FILE}",
            hint="the bundle is incomplete; export it again",
        ) from exc
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(
            f"{data} cannot be read as Parquet ({type(exc).__name__}: {exc}); it was changed "
            f"after {bundle.ref} was exported (manifest sha256 {bundle.digest})",
            hint="do not use this copy: export the dataset again from the store",
        ) from exc
    actual = table_digest(df)
    if actual != bundle.digest:
        raise DataError(
            f"{data} does not match its manifest: the table hashes to {actual}, the manifest "
            f"of {bundle.ref} says {bundle.digest}",
            hint="the data was changed after it was exported; do not use it: export the "
            "dataset again from the store (`shipml build data` / `shipml data export`)",
        )
    return bundle, df


def copy_bundle(bundle: Bundle, target: Path) -> Path:
    """Copy a (verified) bundle's files into ``target``, e.g. a volume an init container
    shares with the main container; each file is written under a temporary name, then
    renamed."""
    target.mkdir(parents=True, exist_ok=True)
    for name in (DATA_FILE, MANIFEST):
        tmp = target / f".{name}.tmp-{os.getpid()}"
        shutil.copyfile(bundle.path / name, tmp)
        os.replace(tmp, target / name)
    return target
