"""One way to name a model: a reference (``NAME@ALIAS``, ``NAME/VERSION`` or a package
folder) resolved to the package folder it names, with its name, version and alias.

Every command resolves through ``resolve_model`` (the package to load) or
``resolve_version`` (the registry's full record, tags included), and builds its
registry with ``registry_for``. Serving by reference needs only the folder: for the
embedded SQLite registry it is read straight from MLflow's tables (read-only, a few
milliseconds) instead of importing MLflow (about 1.5 s); anything unexpected there — a
missing table, a remote store, a name that is not found — falls back to MLflow, whose
answer (and error message) is the reference.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from shipml.errors import ConfigError
from shipml.tracking.registry import ModelRef, Registry, VersionInfo, parse_model_ref
from shipml.tracking.store import tracker_for

DELETED_STAGE = "Deleted_Internal"  # how MLflow's SQL store marks a deleted version


@dataclass(frozen=True)
class ResolvedModel:
    """A model package on local disk and what it is: ``registered`` is False for a
    package folder named directly (its version is then "1")."""

    path: Path
    name: str
    version: str
    alias: str | None = None
    registered: bool = False
    info: VersionInfo | None = None  # the registry's record, when asked for (``full``)

    @property
    def ref(self) -> str:
        """``NAME/VERSION`` for a registered version, the folder otherwise."""
        return f"{self.name}/{self.version}" if self.registered else str(self.path)


def registry_for(config: Any) -> Registry:
    """The project's registry (``config`` is a ProjectConfig); MLflow loads here."""
    return Registry(tracker_for(config))


def resolve_version(config: Any, ref: str | ModelRef) -> VersionInfo:
    """The registry's record of ``NAME@ALIAS`` or ``NAME/VERSION`` (tags included)."""
    return registry_for(config).resolve(ref)


def resolve_model(
    config: Any | None,
    ref: str | ModelRef,
    *,
    full: bool = False,
    registry: Registry | None = None,
) -> ResolvedModel:
    """The package folder ``ref`` names. ``config`` (a ProjectConfig, or None outside a
    project) is needed for a registry reference; ``full`` adds the registry's record
    (``info``: tags, run id, aliases), read through MLflow (``registry``, if given)."""
    parsed = parse_model_ref(ref) if isinstance(ref, str) else ref
    if parsed.path is not None:
        return ResolvedModel(parsed.path, parsed.path.name, "1")
    if config is None and registry is None:
        raise ConfigError(
            f"{parsed} is a registry reference, but there is no project here",
            hint="run inside a project (or -C DIR), or give a package folder",
        )
    if not full and registry is None and config is not None:
        found = _sqlite_lookup(config.registry_uri, parsed)
        if found is not None:
            return found
    registry = registry or registry_for(config)
    info = registry.resolve(parsed)
    return ResolvedModel(
        registry.local_path(info), info.name, info.version, parsed.alias, True, info
    )


def _sqlite_lookup(uri: str, ref: ModelRef) -> ResolvedModel | None:
    """The version ``ref`` names, read from an embedded SQLite registry without MLflow;
    None when that cannot be done with certainty (MLflow then answers)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or ref.name is None:
        return None
    db = Path(uri[len(prefix) :])
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        version = ref.version
        if ref.alias is not None:
            rows = conn.execute(
                "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                (ref.name, ref.alias),
            ).fetchall()
            if len(rows) != 1:
                return None
            version = str(rows[0][0])
        rows = conn.execute(
            "SELECT source, current_stage FROM model_versions WHERE name = ? AND version = ?",
            (ref.name, int(str(version))),
        ).fetchall()
    except (sqlite3.Error, ValueError):
        return None
    finally:
        conn.close()
    if len(rows) != 1 or rows[0][1] == DELETED_STAGE:
        return None
    source = urlparse(str(rows[0][0]))
    if source.scheme not in ("", "file"):
        return None  # a remote artifact store: MLflow downloads it
    path = Path(unquote(source.path))
    if not path.is_dir():
        return None
    return ResolvedModel(path, ref.name, str(version), ref.alias, registered=True)
