"""The registry of a project as data (what `shipml models ls` and `shipml models show`
print, as a table or as JSON): models with their aliases, a model's versions, or one
version with its record, run metrics, test results and package."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipml.config import ProjectConfig
    from shipml.model import ModelPackage
    from shipml.tracking import Registry, VersionInfo


def when(ms: int) -> str:
    """A registry timestamp (milliseconds) as UTC ISO 8601, '' when unknown."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _registry(config: ProjectConfig) -> Registry:
    from shipml.tracking import registry_for

    return registry_for(config)


def list_models(config: ProjectConfig) -> list[dict[str, Any]]:
    """Each registered model: its number of versions, the latest, and its aliases."""
    registry = _registry(config)
    models = []
    for name in registry.model_names():
        versions = registry.versions(name)
        models.append(
            {
                "name": name,
                "versions": len(versions),
                "latest": versions[-1].version if versions else None,
                "aliases": dict(sorted(registry.aliases(name).items())),
            }
        )
    return models


def describe_model(config: ProjectConfig | None, ref: str) -> dict[str, Any]:
    """``NAME``: every version of the model. ``NAME@ALIAS``, ``NAME/VERSION``: the version's
    record (aliases, run and its metrics, source, image, tests, a forced promotion) and its
    package. A package folder: the package alone."""
    from shipml.model import ModelPackage
    from shipml.tracking import parse_model_ref, resolve_model
    from shipml.tracking.store import run_metrics

    if "@" not in ref and "/" not in ref and not ref.startswith("."):
        if config is None:
            raise _no_project(ref)
        versions = _registry(config).versions(ref)
        return {"name": ref, "versions": [_version(v) for v in versions]}
    parsed = parse_model_ref(ref)
    if parsed.path is not None:
        return {"version": None, "package": package_record(ModelPackage.load(parsed.path))}
    if config is None:
        raise _no_project(ref)
    registry = _registry(config)
    model = resolve_model(None, parsed, full=True, registry=registry)
    info = model.info if model.info is not None else registry.resolve(parsed)
    metrics: dict[str, float] = {}
    if info.run_id:
        metrics = run_metrics(registry.tracker.get_run(info.run_id))
    return {
        "version": {**_version(info), "metrics": metrics},
        "package": package_record(ModelPackage.load(model.path)),
    }


def _version(v: VersionInfo) -> dict[str, Any]:
    from shipml.testing.runner import version_results

    tags = v.tags
    forced = None
    if tags.get("shipml.promotion.forced") == "true":
        forced = {k: tags.get(f"shipml.promotion.{k}", "") for k in ("by", "time", "reason")}
    return {
        "name": v.name,
        "version": v.version,
        "ref": v.ref,
        "aliases": list(v.aliases),
        "created": when(v.created),
        "run_id": v.run_id,
        "source": v.source,
        "onnx_sha256": tags.get("shipml.onnx_sha256", ""),
        "image": tags.get("shipml.image", ""),
        "image_digest": tags.get("shipml.image_digest", ""),
        "tests": version_results(tags),
        "forced_promotion": forced,
    }


def package_record(package: ModelPackage) -> dict[str, Any]:
    """A model package: where it is, its format, lineage, parity, signature and files."""
    files = {
        name: {"sha256": digest, "bytes": (package.path / name).stat().st_size}
        for name, digest in sorted(package.manifest["files"].items())
    }
    return {
        "path": str(package.path),
        "format": package.format,
        "onnx_sha256": package.onnx_sha256,
        "lineage": package.lineage,
        "parity": package.manifest.get("parity"),
        "signature": package.signature.to_dict(),
        "files": files,
    }


def _no_project(ref: str) -> Exception:
    from shipml.errors import ConfigError

    return ConfigError(
        f"{ref} is a registry reference, but there is no project here",
        hint="run inside a project (or -C DIR), or give a package folder",
    )
