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

import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd

from shipml.data.digest import FORMAT, table_digest
from shipml.data.profile import table_profile, table_schema
from shipml.data.source import parse_source, read_source
from shipml.errors import DataError, ShipmlError

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
        return [Snapshot(**entry) for entry in self._read_json(path)["versions"]]

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
        if (
            latest is not None
            and latest.source_sha256 == raw.sha256
            and latest.source == raw.uri
            and self.fs.exists(self._object(latest.digest, "data.parquet"))
        ):
            return latest  # the same bytes, still stored: no need to parse again
        df = parse_source(raw)
        # The Parquet encoding (its compression runs outside the GIL) is made while the
        # digest, schema and profile are computed: on two cores most of it is free.
        with ThreadPoolExecutor(1, thread_name_prefix="shipml-parquet") as pool:
            encoded = pool.submit(_parquet_bytes, df)
            try:
                digest = table_digest(df)
                data_path = self._object(digest, "data.parquet")
                if latest is not None and latest.digest == digest:
                    if not self.fs.exists(data_path):  # repair a snapshot whose data went missing
                        self._write(data_path, encoded.result())
                    return latest
                snap = self._snapshot(name, raw, df, digest, latest, description)
                if not self.fs.exists(data_path):
                    self._write(data_path, encoded.result())
            finally:
                encoded.cancel()
        meta = snap.to_dict()
        for key in ("name", "version", "created", "description"):
            meta.pop(key)
        self._write(self._object(digest, "snapshot.json"), _dumps(meta))
        catalog = {"name": name, "versions": [s.to_dict() for s in [*versions, snap]]}
        self._write(self._catalog(name), _dumps(catalog))
        return snap

    def _snapshot(
        self,
        name: str,
        raw: Any,
        df: pd.DataFrame,
        digest: str,
        latest: Snapshot | None,
        description: str,
    ) -> Snapshot:
        return Snapshot(
            name=name,
            version=(latest.version + 1) if latest else 1,
            digest=digest,
            source=raw.uri,
            rows=len(df),
            columns=len(df.columns),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            source_sha256=raw.sha256,
            schema=table_schema(df),
            profile=table_profile(df),
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
                df = pd.read_parquet(io.BytesIO(fh.read()))
        except FileNotFoundError as exc:
            raise DataError(
                f"the data of {snap.ref} is missing from the store ({path})",
                hint=f"add it again with `shipml data add {snap.name} {snap.source}`",
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
