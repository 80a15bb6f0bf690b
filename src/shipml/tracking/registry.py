"""The model registry (MLflow's): versions, aliases (champion, challenger) and references.

A model reference (REF) is ``name@alias``, ``name/version`` or a package folder.

A protected alias (``[gates] protect``, by default ``champion``) is not moved by
``Registry.set_alias``: it moves only through the promotion gates, whose one function
(``shipml.project.promotion``) alone may use ``shipml.tracking.protected`` (an
import-linter contract says so).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from shipml.errors import RegistryError
from shipml.tracking.store import Tracker, scrub, store_call

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
PACKAGE_MANIFEST = "package.json"


def _quoted(value: str) -> str:
    """``value`` as a string in an MLflow search filter, in the quotes it does not hold:
    a model registered (by anyone, in MLflow's UI) as ``a'b`` made ``name = 'a'b'`` an
    invalid filter, and its versions unreadable. (A value holding both is refused.)"""
    return f'"{value}"' if "'" in value else f"'{value}'"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: a registry entry (name with version or alias) or a folder."""

    name: str | None = None
    version: str | None = None
    alias: str | None = None
    path: Path | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


@dataclass(frozen=True)
class VersionInfo:
    """What the registry knows about one model version."""

    name: str
    version: str
    source: str
    run_id: str | None
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    created: int = 0
    description: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


def parse_model_ref(ref: str) -> ModelRef:
    """Parse ``name@alias``, ``name/version`` or the path of a package folder."""
    path = Path(ref).expanduser()
    if path.is_dir() and (path / PACKAGE_MANIFEST).is_file():
        return ModelRef(path=path.resolve())
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if NAME_RE.match(name) and ALIAS_RE.match(alias):
            return ModelRef(name=name, alias=alias)
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        if NAME_RE.match(name) and version.isdigit():
            return ModelRef(name=name, version=version)
    if path.exists():
        raise RegistryError(
            f"{ref} is not a model package folder (it has no {PACKAGE_MANIFEST})",
            hint="give a folder made by shipml.package_model, or a registry reference",
        )
    raise RegistryError(
        f"cannot read the model reference {ref!r}",
        hint="write NAME@ALIAS (penguins@champion), NAME/VERSION (penguins/3) or a package folder",
    )


def check_alias(alias: str) -> None:
    """A RegistryError unless ``alias`` is a word an alias may be."""
    if not ALIAS_RE.match(alias) or alias.lower() == "latest" or alias.isdigit():
        raise RegistryError(
            f"invalid alias {alias[:80]!r}",
            hint="use a word such as champion or challenger ('latest' is reserved)",
        )


def registry_of(tracker: Any) -> Any:
    """The registry of a tracker: ``Registry`` for a ``Tracker``, the worker's registry
    for a ``RemoteTracker`` (which makes its calls in the tracking worker)."""
    remote = getattr(tracker, "registry", None)
    return remote() if callable(remote) else Registry(tracker)


def _info(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=str(mv.version),
        source=mv.source,
        run_id=mv.run_id,
        aliases=list(getattr(mv, "aliases", []) or []),
        tags=dict(mv.tags or {}),
        created=int(mv.creation_timestamp or 0),
        description=mv.description or "",
    )


def _not_found(exc: Exception) -> bool:
    return (
        "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", ""))
        or "not found" in str(exc).lower()
    )


class Registry:
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.client = tracker.client
        self.protected = frozenset(getattr(tracker, "protected_aliases", ("champion",)))

    # -- reading ------------------------------------------------------------------
    @store_call
    def model_names(self) -> list[str]:
        return sorted(m.name for m in _every(self.client.search_registered_models))

    @store_call
    def versions(self, name: str) -> list[VersionInfo]:
        model = self._require_model(name)
        by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(str(version), []).append(str(alias))
        found = _every(self.client.search_model_versions, f"name = {_quoted(name)}")
        infos = [_info(mv) for mv in found]
        for info in infos:  # search results do not carry aliases
            info.aliases[:] = sorted(set(info.aliases) | set(by_version.get(info.version, [])))
        return sorted(infos, key=lambda v: int(v.version))

    @store_call
    def aliases(self, name: str) -> dict[str, str]:
        model = self._require_model(name)
        return {str(k): str(v) for k, v in (model.aliases or {}).items()}

    def _require_model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if not _not_found(exc):
                refused = scrub(str(exc), self.tracker.tracking_uri)[:300]
                raise RegistryError(f"the registry refused: {refused}") from exc
            known = ", ".join(self.model_names()) or "none yet"
            raise RegistryError(
                f"no registered model named {name!r} (registered: {known})",
                hint="run the pipeline (`shipml run`) to register one",
            ) from exc

    @store_call
    def resolve(self, ref: ModelRef | str) -> VersionInfo:
        ref = parse_model_ref(ref) if isinstance(ref, str) else ref
        if ref.path is not None or ref.name is None:
            raise RegistryError(f"{ref} is a folder, not a registry entry")
        from mlflow.exceptions import MlflowException

        model = self._require_model(ref.name)
        try:
            if ref.alias:
                mv = self.client.get_model_version_by_alias(ref.name, ref.alias)
            else:
                mv = self.client.get_model_version(ref.name, str(ref.version))
        except MlflowException as exc:
            if ref.alias:
                aliases = dict(model.aliases or {})
                have = ", ".join(f"{a} -> v{v}" for a, v in aliases.items()) or "none"
                raise RegistryError(
                    f"model {ref.name!r} has no alias {ref.alias!r} (aliases: {have})",
                    hint=f"set one with `shipml models alias {ref.name}/VERSION {ref.alias}`",
                ) from exc
            versions = ", ".join(v.version for v in self.versions(ref.name))
            raise RegistryError(
                f"model {ref.name!r} has no version {ref.version} (versions: {versions})",
                hint=f"list them with `shipml models show {ref.name}`",
            ) from exc
        return _info(mv)

    @store_call
    def local_path(self, info: VersionInfo) -> Path:
        """A local folder with the version's package (downloaded if the store is remote)."""
        parsed = urlparse(info.source)
        if parsed.scheme in ("", "file"):
            return Path(unquote(parsed.path))
        import mlflow.artifacts

        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=info.source, tracking_uri=self.tracker.tracking_uri
            )
        )

    @store_call
    def find_by_digest(self, name: str, content_digest: str) -> VersionInfo | None:
        """The version of ``name`` registered with this package content digest, if any."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(
                f"name = {_quoted(name)} and tags.`shipml.model_digest` = {_quoted(content_digest)}"
            )
        except MlflowException:
            return None
        if not found:
            return None
        return self.resolve(ModelRef(name=name, version=str(found[0].version)))  # with aliases

    # -- writing ------------------------------------------------------------------
    @store_call
    def register(
        self,
        name: str,
        *,
        run_id: str,
        source: str,
        content_digest: str,
        tags: dict[str, str],
        description: str = "",
    ) -> tuple[VersionInfo, bool]:
        """Register a package; one with the same model digest reuses its version.

        Returns the version and whether it was created now."""
        from mlflow.exceptions import MlflowException

        if not NAME_RE.match(name):
            raise RegistryError(
                f"invalid model name {name!r}",
                hint="use letters, digits, '_', '-' or '.' ([model] name in shipml.toml)",
            )
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            try:
                self.client.create_registered_model(name)
            except MlflowException:
                # Another run created it meanwhile (two first runs at once): theirs is ours.
                self.client.get_registered_model(name)
        for existing in _every(self.client.search_model_versions, f"name = {_quoted(name)}"):
            if (existing.tags or {}).get("shipml.model_digest") == content_digest:
                return _info(existing), False
        all_tags = {**tags, "shipml.model_digest": content_digest}
        mv = self.client.create_model_version(
            name, source=source, run_id=run_id, tags=all_tags, description=description
        )
        return _info(mv), True

    @store_call
    def set_alias(self, name: str, version: str, alias: str) -> VersionInfo:
        """Point an unprotected alias at ``version``; a protected one is refused."""
        check_alias(alias)
        if alias in self.protected:
            raise RegistryError(
                f"{alias!r} is a protected alias ([gates] protect): it moves only through "
                "the promotion gates",
                hint=f"use `shipml promote {name}/{version} --alias {alias}` (or "
                "shipml.project.promotion.promote)",
            )
        # A store with case-insensitive keys (MySQL's default collation) would move the
        # protected alias itself; everywhere else it is a look-alike that misleads readers.
        twin = next((p for p in self.protected if p.casefold() == alias.casefold()), None)
        if twin is not None:
            raise RegistryError(
                f"{alias!r} differs from the protected alias {twin!r} only in case",
                hint=f"use another name, or `shipml promote {name}/{version} --alias {twin}`",
            )
        return self._move_alias(name, version, alias)

    def _move_alias(self, name: str, version: str, alias: str) -> VersionInfo:
        """The move itself, for any alias (``tracking.protected`` is its only other user)."""
        check_alias(alias)
        info = self.resolve(ModelRef(name=name, version=str(version)))
        self.client.set_registered_model_alias(name, alias, info.version)
        return self.resolve(ModelRef(name=name, version=info.version))

    @store_call
    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(name, version, key, value)

    @store_call
    def delete_version_tag(self, name: str, version: str, key: str) -> None:
        """Remove a tag if it is there."""
        from mlflow.exceptions import MlflowException

        with contextlib.suppress(MlflowException):
            self.client.delete_model_version_tag(name, version, key)


def _every(search: Any, filter_string: str | None = None) -> list[Any]:
    """Every result of an MLflow registry search, page after page: one call returns at
    most a page (100 registered models by default), silently."""
    found: list[Any] = []
    token = None
    while True:
        page = search(filter_string=filter_string, page_token=token)
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found
