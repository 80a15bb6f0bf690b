"""The step cache: step outputs stored by content digest, entries by cache key.

    {cache_dir}/objects/<kind>-<digest>[.ext]   one stored output
    {cache_dir}/entries/<key>.json              what a step produced for a key

Outputs are stored by type: DataFrames and Series as Parquet, NumPy arrays as
``.npy`` (no pickle), JSON values as JSON, model packages as folders, and any
other object (a fitted estimator, say) with skops. An entry records the sha256 of
each output's file (a package: its content digest); a file that no longer matches is
a cache miss (it is removed and the step runs again) and is never loaded. Nothing is
unpickled. A skops object loads only if every type in it is trusted by skops, listed in
``[model] trusted_types`` or a class of the project's own code (``trust.SkopsTrust``);
the types an entry lists are never trusted (anyone who can write the cache folder can
write an entry). An entry holding another type is a miss: the step runs again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shipml.errors import PipelineError, ShipmlError, UnsafeModelError
from shipml.files import sha256_file, sweep_leftovers
from shipml.model import ModelPackage
from shipml.pipeline.frames import LABELS, frame_digest, labels_of
from shipml.pipeline.trust import SkopsTrust
from shipml.pipeline.values import json_value

if TYPE_CHECKING:
    from shipml.config import ProjectConfig

log = logging.getLogger("shipml.pipeline")

FORMAT = 2  # 2: entries record the sha256 of every output file
SERIES_NO_NAME = "__shipml_unnamed__"


@dataclass(frozen=True)
class StoredOutput:
    name: str
    kind: str
    digest: str
    file: str
    # What skops reported as untrusted when this was written: a record, never trusted
    # (loading asks SkopsTrust, from configuration and the project's code).
    trusted_types: list[str] = field(default_factory=list)
    sha256: str = ""  # of the file's bytes (a package: empty, its digest says it all)


@dataclass(frozen=True)
class CacheEntry:
    key: str
    step: str
    outputs: list[StoredOutput]
    metrics: dict[str, float]
    duration: float
    created: str
    run_id: str | None

    def output(self, name: str) -> StoredOutput:
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(name)


# The only names the cache gives a stored output: a file (or folder) in ``objects/``.
OBJECT_NAME = re.compile(
    r"(frame|series|ndarray|json|skops)-[0-9a-f]{64}\.(parquet|npy|json|skops)|package-[0-9a-f]{64}"
)


def object_name_ok(name: str) -> bool:
    """Whether ``name`` is one the cache gives (no ``/``, no ``..``): an entry or manifest
    is written by whoever can write the cache or the store, and a forged ``../../x`` made
    the cache delete (or write) files and folders outside it."""
    return bool(OBJECT_NAME.fullmatch(name))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactCache:
    """The cache in ``cache_dir``; ``trust`` says which types a skops output may hold
    (default: only those skops trusts; ``project_cache`` gives the project's)."""

    def __init__(self, cache_dir: Path, trust: SkopsTrust | None = None) -> None:
        self.dir = cache_dir
        self.objects = cache_dir / "objects"
        self.entries = cache_dir / "entries"
        self.trust = trust or SkopsTrust()
        self._swept = False

    # -- entries ------------------------------------------------------------------
    def lookup(self, key: str, names: tuple[str, ...] | None = None) -> CacheEntry | None:
        """The entry for ``key`` if it is readable, holds exactly the outputs ``names`` (when
        given) and every output is intact; otherwise None (a miss, never an error)."""
        path = self.entries / f"{key}.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entry = CacheEntry(**{**data, "outputs": [StoredOutput(**o) for o in data["outputs"]]})
        except (ValueError, TypeError, KeyError):
            return None  # an unreadable entry is a miss, never an error
        if names is not None and sorted(o.name for o in entry.outputs) != sorted(names):
            return None
        if not all(object_name_ok(o.file) for o in entry.outputs):
            return None  # not one of ours: never opened, never removed
        for out in entry.outputs:
            if not self.intact(out):
                self._discard(out)  # changed or half there: the step runs and stores it again
                return None
        for out in entry.outputs:
            if out.kind == "skops" and not self._trusted(entry, out):
                return None  # never loaded: the step runs again and replaces the entry
        return entry

    def _trusted(self, entry: CacheEntry, out: StoredOutput) -> bool:
        """Every type in a skops output is trusted (else a one-line warning says which)."""
        try:
            self.trust.check((self.objects / out.file).read_bytes(), f"output '{out.name}'")
        except OSError:
            return False
        except UnsafeModelError as exc:
            log.warning(
                "step '%s': not reusing its cached outputs: %s; %s",
                entry.step,
                exc.message,
                exc.hint,
            )
            return False
        return True

    def intact(self, out: StoredOutput) -> bool:
        """The output's file (folder) is there with the content the entry records."""
        if not object_name_ok(out.file):
            return False
        path = self.objects / out.file
        try:
            if out.kind == "package":
                return ModelPackage.load(path).digest == out.digest
            return bool(out.sha256) and sha256_file(path) == out.sha256
        except (OSError, ShipmlError):
            return False

    def _discard(self, out: StoredOutput) -> None:
        if not object_name_ok(out.file):
            return
        path = self.objects / out.file
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def save(
        self,
        key: str,
        step: str,
        outputs: list[StoredOutput],
        metrics: dict[str, float],
        duration: float,
        run_id: str | None,
    ) -> CacheEntry:
        entry = CacheEntry(
            key=key,
            step=step,
            outputs=outputs,
            metrics=metrics,
            duration=duration,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            run_id=run_id,
        )
        self._atomic_write(
            self.entries / f"{key}.json", json.dumps(asdict(entry), indent=2).encode()
        )
        return entry

    def _atomic_write(self, path: Path, data: bytes) -> None:
        """Write ``path`` whole; on a failure (a full disk) no partial file is left behind,
        and the error names the cache folder."""
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise PipelineError(
                f"cannot write {len(data):,} bytes to the step cache {self.dir}: "
                f"{exc.strerror or exc}",
                hint="free space there (or point [pipeline] cache_dir in shipml.toml at a "
                "disk that has it), then run again: the steps that finished are cached",
            ) from exc

    # -- objects ------------------------------------------------------------------
    def store(self, step: str, name: str, value: Any) -> StoredOutput:
        """Write one output by content digest and describe it."""
        self.objects.mkdir(parents=True, exist_ok=True)
        if not self._swept:  # once: what writes killed midway left (an hour old or more)
            for folder in (self.objects, self.entries):
                sweep_leftovers(folder)
            self._swept = True
        if isinstance(value, ModelPackage):
            out = StoredOutput(name, "package", value.digest, f"package-{value.digest}")
            if not self.intact(out):
                self._store_package(value, out)
            return out
        if isinstance(value, pd.DataFrame | pd.Series):
            return self._store_frame(step, name, value)
        if isinstance(value, np.ndarray) and value.dtype != object:
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            return self._put(name, "ndarray", _sha256(buf.getvalue()), "npy", buf.getvalue())
        raw = json_value(value)
        if raw is not None:
            return self._put(name, "json", _sha256(raw), "json", raw)
        return self._store_skops(step, name, value)

    def _store_frame(self, step: str, name: str, value: pd.DataFrame | pd.Series) -> StoredOutput:
        """A DataFrame or Series as Parquet (a Series as a one-column frame named by it),
        its column labels as they are (``0``, ``1.5``, tuples...), so that a downstream step
        gets the same frame whether it came from the step or from the cache."""
        kind = "frame" if isinstance(value, pd.DataFrame) else "series"
        if isinstance(value, pd.DataFrame):
            written = value
        else:
            written = value.to_frame(name=SERIES_NO_NAME if value.name is None else value.name)
        frame = written.copy(deep=False)  # the digest's copy: never rename the caller's
        frame.columns = [str(c) for c in frame.columns]
        try:
            as_they_are, labels = labels_of(written.columns)
            digest = frame_digest(frame)
            if not all(isinstance(c, str) for c in written.columns):  # 0 is not "0"
                types = [type(c).__name__ for c in written.columns]
                digest = _sha256(f"{digest}{types}".encode())
            buf = io.BytesIO()
            table = pa.Table.from_pandas(written if as_they_are else frame)
            if labels is not None:
                table = table.replace_schema_metadata({**table.schema.metadata, LABELS: labels})
            pq.write_table(table, buf)
        except (ShipmlError, pa.ArrowException, ValueError, TypeError) as exc:
            detail = exc.message if isinstance(exc, ShipmlError) else f"{exc}"
            hint = exc.hint if isinstance(exc, ShipmlError) and exc.hint else None
            raise PipelineError(
                f"step '{step}' returned a {type(value).__name__} as '{name}' that shipml "
                f"cannot store: {detail[:300]}",
                hint=hint
                or "give each column one type of value (numbers, booleans, datetimes or "
                "strings), e.g. df[col].astype(str), before returning it",
            ) from exc
        return self._put(name, kind, digest, "parquet", buf.getvalue())

    def _store_package(self, package: ModelPackage, out: StoredOutput) -> None:
        """Copy the package folder in under a temporary name, then rename it in place (a
        changed copy there is replaced); another run storing the same package at the same
        moment is no error."""
        tmp = Path(tempfile.mkdtemp(dir=self.objects, prefix=".tmp-"))
        try:
            shutil.copytree(package.path, tmp, dirs_exist_ok=True)
            self._discard(out)
            os.replace(tmp, self.objects / out.file)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.intact(out):  # not the other run's complete copy: a real failure
                raise

    def _put(self, name: str, kind: str, digest: str, ext: str, data: bytes) -> StoredOutput:
        """Store ``data`` under its own sha256 (rewritten if the file there was changed);
        ``digest`` is the output's identity in cache keys (a frame's: its content)."""
        sha = _sha256(data)
        path = self.objects / f"{kind}-{sha}.{ext}"
        if not (path.is_file() and sha256_file(path) == sha):
            self._atomic_write(path, data)
        return StoredOutput(name, kind, digest, path.name, sha256=sha)

    def _store_skops(self, step: str, name: str, value: Any) -> StoredOutput:
        import skops.io as sio

        try:
            data = sio.dumps(value)
        except Exception as exc:  # skops raises many kinds for unsupported objects
            raise PipelineError(
                f"step '{step}' returned {type(value).__name__} as '{name}', which shipml "
                f"cannot store: {exc}",
                hint="return DataFrames, arrays, JSON values, scikit-learn objects or a "
                "model package (shipml.package_model)",
            ) from exc
        trusted = sorted(sio.get_untrusted_types(data=data))
        refused = [t for t in trusted if not self.trust.allowed(t)]
        if refused:  # said now, not only when the next run finds the entry unusable
            log.warning(
                "step '%s': output '%s' holds types the cache will not load, so the step "
                "runs again next time: %s; to reuse it, list them in shipml.toml under "
                "[model] trusted_types",
                step,
                name,
                ", ".join(refused),
            )
        out = self._put(name, "skops", _sha256(data), "skops", data)
        return StoredOutput(out.name, out.kind, out.digest, out.file, trusted, out.sha256)

    def load(self, out: StoredOutput) -> Any:
        """An output's value, from bytes checked against the sha256 its entry records."""
        if not object_name_ok(out.file):
            raise PipelineError(
                f"a cached output is named {out.file[:80]!r}, which is not a name the cache "
                "gives: its entry or manifest was not written by shipml",
                hint="run the upstream step again (or run with --no-cache)",
            )
        path = self.objects / out.file
        modified = PipelineError(
            f"cached output {path} was modified since shipml wrote it",
            hint="run again: the changed output is a cache miss and its step runs again "
            "(or run with --no-cache)",
        )
        if out.kind == "package":
            package = ModelPackage.load(path)
            if package.digest != out.digest:
                raise modified
            return package
        data = path.read_bytes()
        if _sha256(data) != out.sha256:
            raise modified
        if out.kind in ("frame", "series"):
            frame = pd.read_parquet(pa.BufferReader(data))
            labels = (pq.read_schema(pa.BufferReader(data)).metadata or {}).get(LABELS)
            if labels is not None:
                frame.columns = json.loads(labels)
            if out.kind == "series":
                series = frame.iloc[:, 0]
                return series.rename(None) if series.name == SERIES_NO_NAME else series
            return frame
        if out.kind == "ndarray":
            return np.load(io.BytesIO(data), allow_pickle=False)
        if out.kind == "json":
            return json.loads(data)
        if out.kind == "skops":
            import skops.io as sio

            # The types to trust come from SkopsTrust, never from the entry.
            return sio.loads(data, trusted=self.trust.check(data, f"cached output {path}"))
        raise PipelineError(f"unknown cached output kind {out.kind!r} in {path}")


def project_cache(config: ProjectConfig) -> ArtifactCache:
    """The project's cache: a skops output may hold the types skops trusts, those of
    ``[model] trusted_types`` and classes of the project's code (not of files in the cache
    folder or a local artifact store, which others may write)."""
    exclude = [config.cache_dir]
    store = config.artifact_root
    if "://" not in store or store.startswith("file://"):
        exclude.append(Path(store.removeprefix("file://")))
    trust = SkopsTrust(config.model.trusted_types, config.root, exclude)
    return ArtifactCache(config.cache_dir, trust)


def cache_key(
    step: str,
    code: str,
    params: dict[str, Any],
    inputs: dict[str, str],
    settings: dict[str, Any] | None = None,
) -> str:
    """sha256 over the step's name, code fingerprint, parameters, input digests and the
    project settings that change what a step produces."""
    payload = {
        "format": FORMAT,
        "step": step,
        "code": code,
        "params": params,
        "inputs": inputs,
        "settings": settings or {},
    }
    return _sha256(json.dumps(payload, sort_keys=True, default=repr).encode())
