"""Dataset snapshots: "where is the data".

A snapshot is an immutable copy of a table, stored as Parquet in the artifact
store under its full content digest, with the source URI, schema, row count and
a statistical profile. Names map to numbered versions in a small catalog:

    {artifact_root}/datasets/objects/sha256-<digest>/data.parquet
    {artifact_root}/datasets/objects/sha256-<digest>/snapshot.json
    {artifact_root}/datasets/catalog/<name>.json

The artifact root is a local folder or any URI fsspec understands (s3://...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa

from shipml.data.digest import FORMAT, table_digest
from shipml.data.profile import table_profile, table_schema
from shipml.data.source import parse_source, read_source
from shipml.errors import DataError, ShipmlError
from shipml.files import exclusive_lock

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Snapshot:
    """One version of a named dataset."""

    name: str
    version: int
    digest: str
    source: str
    rows: int
    columns: int
    created: str
    source_sha256: str
    schema: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    digest_format: str = FORMAT

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise DataError(
            f"invalid dataset name {name!r}",
            hint="use letters, digits, '_', '-' or '.', starting with a letter or digit",
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name@version`` (``latest`` allowed)."""
    name, _, version = ref.partition("@")
    check_name(name)
    if not version or version == "latest":
        return name, None
    if not version.isdigit():
        raise DataError(
            f"invalid dataset version {version!r} in {ref!r}",
            hint="write NAME@VERSION with a version number, e.g. penguins@2",
        )
    return name, int(version)


class DatasetStore:
    """Snapshots and the name catalog, in an artifact store (local folder or fsspec URI)."""

    def __init__(self, artifact_root: str, base: Path | None = None) -> None:
        self.root = artifact_root.rstrip("/") + "/datasets"
        self.base = base
        try:
            fs, self._root_path = fsspec.core.url_to_fs(self.root)
        except (ImportError, ValueError) as exc:
            raise DataError(
                f"cannot open the artifact store {artifact_root[:200]}: {str(exc)[:200]}",
                hint="check [artifacts] root in shipml.toml (for s3:// install s3fs, "
                "for gs:// gcsfs)",
            ) from exc
        self.fs: Any = _Reached(fs, artifact_root)

    # -- paths ------------------------------------------------------------------
    def _object(self, digest: str, file: str) -> str:
        return f"{self._root_path}/objects/sha256-{digest}/{file}"

    def _catalog(self, name: str) -> str:
        return f"{self._root_path}/catalog/{name}.json"

    def _write(self, path: str, data: bytes) -> None:
        """Write atomically: a temporary name, then a rename (a single PUT on object stores)."""
        try:
            self._write_once(path, data)
        except OSError as exc:
            raise DataError(
                f"cannot write to the artifact store {self.root[:200]}: {str(exc)[:200]}",
                hint="point [artifacts] root in shipml.toml at a folder you can write to",
            ) from exc

    def _write_once(self, path: str, data: bytes) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{datetime.now(UTC).strftime('%H%M%S%f')}"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, path)

    def _read_json(self, path: str) -> Any:
        with self.fs.open(path, "rb") as fh:
            return json.loads(fh.read())

    def _read_catalog(self, name: str, path: str) -> list[Snapshot]:
        """The versions a catalog file lists; a damaged one is a DataError naming it (it
        is never rewritten then: the versions it held are not lost by another add)."""
        try:
            return [Snapshot(**entry) for entry in self._read_json(path)["versions"]]
        except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
            raise DataError(
                f"the catalog of dataset {name!r} ({path}) is damaged: "
                f"{type(exc).__name__}: {str(exc)[:200]}",
                hint="restore the file from a backup, or move it away and add the data "
                "again with `shipml data add` (its snapshots stay under datasets/objects/)",
            ) from exc

    # -- catalog ----------------------------------------------------------------
    def names(self) -> list[str]:
        folder = f"{self._root_path}/catalog"
        if not self.fs.exists(folder):
            return []
        return sorted(
            p.rsplit("/", 1)[-1][: -len(".json")]
            for p in self.fs.ls(folder, detail=False)
            if p.endswith(".json")
        )

    def versions(self, name: str) -> list[Snapshot]:
        path = self._catalog(check_name(name))
        if not self.fs.exists(path):
            return []
        return self._read_catalog(name, path)

    def latest(self) -> list[Snapshot]:
        return [self.versions(n)[-1] for n in self.names() if self.versions(n)]

    def get(self, ref: str) -> Snapshot:
        name, version = parse_ref(ref)
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none yet"
            raise DataError(
                f"unknown dataset {name!r} (known: {known})",
                hint=f"add it with `shipml data add {name} PATH_OR_URI`",
            )
        if version is None:
            return versions[-1]
        for snap in versions:
            if snap.version == version:
                return snap
        raise DataError(
            f"dataset {name!r} has no version {version} (versions: "
            f"{', '.join(str(s.version) for s in versions)})",
            hint=f"see them with `shipml data show {name}`",
        )

    # -- add / load -------------------------------------------------------------
    def add(
        self, name: str, source: str, *, description: str = "", fmt: str | None = None
    ) -> Snapshot:
        """Snapshot ``source`` under ``name`` (``fmt``: csv or parquet, default from the
        name). Unchanged content returns the latest version."""
        check_name(name)
        raw = read_source(source, self.base, fmt=fmt)
        versions = self.versions(name)
        latest = versions[-1] if versions else None
        with ThreadPoolExecutor(3, thread_name_prefix="shipml-add") as pool:
            if latest is not None and latest.source == raw.public:
                if latest.source_sha256 == raw.sha256 and self.fs.exists(
                    self._object(latest.digest, "data.parquet")
                ):
                    return latest  # the same bytes, still stored: no need to parse again
            else:
                pool.submit(lambda: raw.sha256)  # hashed (outside the GIL) during the parse
            df = parse_source(raw)
            snap = self._snapshot(pool, name, raw, df, latest, description)
        if snap is latest:
            return latest
        meta = snap.to_dict()
        for key in ("name", "version", "created", "description"):
            meta.pop(key)
        self._write(self._object(snap.digest, "snapshot.json"), _dumps(meta))
        return self._record(snap)

    def _record(self, snap: Snapshot) -> Snapshot:
        """Add ``snap`` to its name's catalog, numbered after the versions there now: the
        catalog is read again under a lock, so two adds at once (two runs of a pipeline,
        two terminals) each get their own version instead of one overwriting the other."""
        with self._catalog_lock(snap.name):
            versions = self.versions(snap.name)
            if versions and versions[-1].digest == snap.digest:
                return versions[-1]  # the same content, added meanwhile
            snap = dataclasses.replace(snap, version=versions[-1].version + 1 if versions else 1)
            catalog = {"name": snap.name, "versions": [s.to_dict() for s in [*versions, snap]]}
            self._write(self._catalog(snap.name), _dumps(catalog))
        return snap

    def _catalog_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """A lock on one name's catalog where the store is a local folder (an object store
        has no locks: there a team adds a name from one place, e.g. CI)."""
        if "file" not in self.fs.protocol:
            return contextlib.nullcontext()
        return exclusive_lock(Path(f"{self._root_path}/catalog/.{name}.lock"))

    def _snapshot(
        self,
        pool: ThreadPoolExecutor,
        name: str,
        raw: Any,
        df: pd.DataFrame,
        latest: Snapshot | None,
        description: str,
    ) -> Snapshot:
        """The snapshot of ``df`` with its data stored (``latest`` if the content is
        unchanged). The digest, the Parquet encoding and its write run in threads while
        the schema and profile are computed: hashing, compression, file writes and
        numpy's sorts release the GIL, so on two cores most of it overlaps."""
        digest = pool.submit(table_digest, df)
        encoded = pool.submit(_parquet_bytes, df)
        failed = threading.Event()

        def store() -> None:  # the data under its digest, unless it is there already
            path = self._object(digest.result(), "data.parquet")
            data = encoded.result()
            if not failed.is_set() and not self.fs.exists(path):
                self._write(path, data)

        stored = pool.submit(store)
        try:
            schema, profile = table_schema(df), table_profile(df)
            stored.result()
        except BaseException:
            failed.set()
            encoded.cancel()
            raise
        if latest is not None and latest.digest == digest.result():
            return latest
        return Snapshot(
            name=name,
            version=(latest.version + 1) if latest else 1,
            digest=digest.result(),
            source=raw.public,  # never a password or a presigned URL's signature
            rows=len(df),
            columns=len(df.columns),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            source_sha256=raw.sha256,
            schema=schema,
            profile=profile,
            description=description,
        )

    def data_uri(self, snap: Snapshot) -> str:
        path = self._object(snap.digest, "data.parquet")
        return path if "://" not in self.root else self.fs.unstrip_protocol(path)

    def load(self, snap: Snapshot, *, verify: bool = True) -> pd.DataFrame:
        """Read a snapshot's table; with ``verify`` its digest is recomputed and checked."""
        path = self._object(snap.digest, "data.parquet")
        try:
            with self.fs.open(path, "rb") as fh:
                df = pd.read_parquet(pa.BufferReader(fh.read()))
        except FileNotFoundError as exc:
            raise DataError(
                f"the data of {snap.ref} is missing from the store ({path})",
                hint=f"add it again with `shipml data add {snap.name} {snap.source}`",
            ) from exc
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(
                f"snapshot {snap.ref} is corrupt: {path} is not readable Parquet "
                f"({str(exc)[:200]})",
                hint=f"the file was changed: delete it, then restore it from the source with "
                f"`shipml data add {snap.name} {snap.source}`",
            ) from exc
        if verify:
            actual = table_digest(df)
            if actual != snap.digest:
                raise DataError(
                    f"snapshot {snap.ref} is corrupt: its data hashes to {actual[:16]}..., "
                    f"the catalog says {snap.digest[:16]}...",
                    hint=f"the file {path} was changed: delete it, then restore it from the "
                    f"source with `shipml data add {snap.name} {snap.source}`",
                )
        return df


class _Reached:
    """An artifact store's filesystem whose calls fail as a ``DataError`` naming the store
    when the store cannot be reached for a reason of the store's library (missing
    credentials, a refused signature): botocore's errors are no ``OSError``. An
    ``OSError`` passes as it is (its callers say what they were doing)."""

    def __init__(self, fs: Any, root: str) -> None:
        self._fs, self._root = fs, root

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._fs, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except (OSError, ShipmlError):
                raise
            except Exception as exc:
                raise DataError(
                    f"cannot reach the artifact store {self._root[:200]}: "
                    f"{type(exc).__name__}: {str(exc)[:200]}",
                    hint="check the store's credentials (for s3://: AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; AWS_ENDPOINT_URL for an "
                    "S3-compatible server) and [artifacts] root in shipml.toml",
                ) from exc

        return call


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    # Dictionary encoding for every column but the floats: measured values rarely repeat,
    # and trying a dictionary on each float column first was half the time of the write.
    dictionary = [str(c) for c in df.columns if not pd.api.types.is_float_dtype(df[c].dtype)]
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, use_dictionary=dictionary)
    return buf.getvalue()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True).encode("utf-8")
