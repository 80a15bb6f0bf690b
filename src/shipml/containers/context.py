"""The build context of each image kind, under ``build/KIND/context``: the pinned runtime
requirements, shipml's own source, the project's files, the model package (serve) or the
dataset bundle (data), and the labels that say what is inside."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.containers.containerfile import (
    Recipe,
    data_recipe,
    project_recipe,
    serve_recipe,
)
from shipml.data import DatasetStore
from shipml.data.bundle import public_uri, write_bundle
from shipml.errors import ContainerError
from shipml.tracking.environment import SOURCE_FILE, git_info

LABEL_PREFIX = "io.shipml."
OCI = "org.opencontainers.image."
# What the serve and data images need: the model server, onnxruntime, the CLI, the data
# bundle reader. Not MLflow, scikit-learn or skl2onnx.
RUNTIME = (
    "numpy",
    "pandas",
    "pyarrow",
    "fsspec",
    "pydantic",
    "typer",
    "rich",
    "onnxruntime",
    "onnx",  # the graph is read before loading: external data must stay in the package
    "uvicorn",
    "uvloop",
    "httptools",
    "orjson",
    "prometheus-client",
    "protobuf",
    "aiohttp",
    "cryptography",
    "tomlkit",  # the audit log's key pin (shipml.audit imports it)
    "zstandard",  # the audit log's compressed records
)
NOTEBOOK = ("jupyterlab", "ipykernel", "nbclient")
NOTEBOOK_FALLBACK = {"jupyterlab": "jupyterlab>=4.2,<5"}
EXCLUDE_DIRS = frozenset(
    {
        ".git",
        ".shipml",
        "build",
        "results",
        "__pycache__",
        ".venv",
        "venv",
        ".ipynb_checkpoints",
        ".pytest_cache",
        "mlruns",
    }
)


def shipml_version() -> str:
    return metadata.version("shipml")


def pin(dist: str, fallback: str | None = None) -> str:
    """``dist==VERSION`` as installed here (the versions shipml runs with), else ``fallback``
    (or the bare name)."""
    try:
        return f"{dist}=={metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return fallback or dist


def _shipml_requirements(extra: str | None = None) -> list[str]:
    """shipml's declared dependencies (or those of one extra), pinned to this machine's."""
    pins = []
    for req in metadata.requires("shipml") or []:
        spec, _, marker = req.partition(";")
        is_extra = "extra ==" in marker
        if (extra is None and is_extra) or (extra is not None and f'"{extra}"' not in marker):
            continue
        match = re.match(r"^\s*([A-Za-z0-9._-]+)(\[[^\]]*\])?", spec)
        if match:
            name, extras = match.group(1), match.group(2) or ""
            pinned = pin(name)
            pins.append(pinned.replace(name, name + extras, 1) if "==" in pinned else spec.strip())
    return pins


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def copy_shipml(target: Path) -> None:
    """shipml's own code as it runs here, with a minimal pyproject to install it from
    (works for an editable checkout and for an installed wheel alike)."""
    package = Path(__file__).resolve().parent.parent
    shutil.copytree(
        package, target / "src" / "shipml", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    (target / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools>=64"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        'name = "shipml"\n'
        f'version = "{shipml_version()}"\n'
        'requires-python = ">=3.11"\n\n'
        "[project.scripts]\n"
        'shipml = "shipml.cli:run"\n\n'
        "[tool.setuptools.packages.find]\n"
        'where = ["src"]\n\n'
        "[tool.setuptools.package-data]\n"
        'shipml = ["templates/project/**/*", "templates/project/*", "py.typed"]\n',
        encoding="utf-8",
    )


def project_files(root: Path) -> list[Path]:
    """The project's files as paths relative to ``root``: what git tracks or would track
    (``.gitignore`` respected), without the store, builds and caches."""
    names: list[str] | None = None
    if (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                cwd=root,
                capture_output=True,
                timeout=60,
                check=True,
            )
            names = [n for n in out.stdout.decode().split("\0") if n]
        except (OSError, subprocess.SubprocessError):
            names = None
    if names is None:
        names = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    files = []
    for name in sorted(set(names)):
        rel = Path(name)
        if any(part in EXCLUDE_DIRS for part in rel.parts) or rel.suffix == ".pyc":
            continue
        if (root / rel).is_file():
            files.append(rel)
    return files


def _inside(root: Path, rel: Path) -> None:
    """A project file must be the project's: a symbolic link out of it (to ~/.aws/
    credentials, say, in a cloned repository) would put that file into the image."""
    real = (root / rel).resolve()
    if not real.is_relative_to(root.resolve()):
        raise ContainerError(
            f"project file {rel} is a symbolic link to {real}, outside the project; its "
            "content would be copied into the image",
            hint="remove the link, or replace it with the file the image needs",
        )


SECRET_SETTINGS = ("admin_token", "feedback_token")  # [rollout]: bearer tokens


def _no_tokens(root: Path) -> None:
    """The project's shipml.toml goes into the image as it is: a gateway token written in
    it would be readable by anyone who can pull the image."""
    import tomllib

    try:
        rollout = tomllib.loads((root / "shipml.toml").read_text(encoding="utf-8"))["rollout"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no such file or section; a malformed file fails where it is loaded
    found = [k for k in SECRET_SETTINGS if isinstance(rollout, dict) and rollout.get(k)]
    if found:
        raise ContainerError(
            f"shipml.toml sets [rollout] {', '.join(found)}; the project is copied into the "
            "image, and the token would be readable by anyone who can pull it",
            hint="remove it from shipml.toml and give it to the gateway in the environment "
            f"(SHIPML_ROLLOUT_{found[0].upper()}; in Kubernetes, the Secret the manifests name)",
        )


def _copy_project(root: Path, target: Path) -> None:
    _no_tokens(root)
    for rel in project_files(root):
        _inside(root, rel)
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dest)
        dest.chmod(0o755 if (root / rel).stat().st_mode & 0o100 else 0o644)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def serve_settings(config: ProjectConfig) -> str:
    """The shipml.toml baked into a serve image: the project's serving limits and trusted
    types; listening on all interfaces; the audit log off until a volume is mounted for it
    (SHIPML_AUDIT_ENABLED=true, a volume at /var/lib/shipml)."""
    audit_dir = "/var/lib/shipml/audit"
    sections: dict[str, dict[str, Any]] = {
        "project": {"name": config.project.name},
        "model": {"name": config.model_name, "trusted_types": config.model.trusted_types},
        "serving": {
            "host": "0.0.0.0",
            "port": 8080,
            "workers": config.serving.workers,
            "max_body_bytes": config.serving.max_body_bytes,
            "max_buffered_bytes": config.serving.max_buffered_bytes
            or 8 * config.serving.max_body_bytes,
            "max_batch_size": config.serving.max_batch_size,
            "max_wait_ms": config.serving.max_wait_ms,
            "graceful_shutdown_s": config.serving.graceful_shutdown_s,
        },
        "audit": {
            "enabled": False,
            "path": f"{audit_dir}/audit.db",
            "signing_key": f"{audit_dir}/signing.key",
            "checkpoint_dir": f"{audit_dir}/checkpoints",
            "checkpoint_every": config.audit.checkpoint_every,
            "store_inputs": config.audit.store_inputs,
        },
        "rollout": {"host": "0.0.0.0", "port": config.rollout.port},
    }
    out = ["# Made by `shipml build serve`: the settings of the model server in this image."]
    for section, values in sections.items():
        out.append(f"\n[{section}]")
        out += [f"{k} = {_toml(v)}" for k, v in values.items()]
    return "\n".join(out) + "\n"


def git_labels(root: Path) -> tuple[dict[str, str], dict[str, Any]]:
    git = git_info(root)
    labels: dict[str, str] = {}
    commit = git.get("commit")
    if commit:
        labels[OCI + "revision"] = commit
        labels[LABEL_PREFIX + "git-commit"] = commit
        labels[LABEL_PREFIX + "git-dirty"] = str(bool(git.get("dirty"))).lower()
        if git.get("remote"):
            labels[OCI + "source"] = public_uri(str(git["remote"]))
    return labels, git


def _resolve_model(config: ProjectConfig, ref: str | None) -> tuple[Any, Any, Any]:
    """(package, VersionInfo or None, Registry or None) for ``ref``; without ``ref`` the
    model's champion, or its latest version when it has no champion."""
    from shipml.model import ModelPackage
    from shipml.tracking import ModelRef, parse_model_ref, registry_for, resolve_model

    if ref is not None:
        parsed = parse_model_ref(ref)
        if parsed.path is not None:
            return ModelPackage.load(parsed.path), None, None
    registry = registry_for(config)
    if ref is None:
        name = config.model_name
        versions = registry.versions(name)
        if not versions:
            raise ContainerError(
                f"model {name!r} has no versions to build a serve image of",
                hint="run the pipeline first: `shipml run`",
            )
        aliases = registry.aliases(name)
        wanted: str | ModelRef = ModelRef(
            name=name, version=aliases.get("champion", versions[-1].version)
        )
    else:
        wanted = ref
    model = resolve_model(config, wanted, full=True, registry=registry)
    return ModelPackage.load(model.path), model.info, registry


def serve_context(
    config: ProjectConfig, ref: str | None, base: str, context: Path, labels: dict[str, str]
) -> tuple[Recipe, str, Any, Any]:
    """The model package and the server's settings; labels from the model's lineage."""
    pkg, info, registry = _resolve_model(config, ref)
    name = info.name if info else config.model_name
    version = info.version if info else f"local-{pkg.model_digest[:12]}"
    shutil.copytree(pkg.path, context / "model")
    (context / "shipml.toml").write_text(serve_settings(config), encoding="utf-8")
    skops = pkg.format == "skops"
    if skops:
        write_lines(context / "requirements" / "skops.txt", [pin("scikit-learn"), pin("skops")])
    lineage = pkg.lineage
    labels.update(
        {
            LABEL_PREFIX + "model.name": name,
            LABEL_PREFIX + "model.version": version,
            LABEL_PREFIX + "model.digest": pkg.model_digest,
            LABEL_PREFIX + "model.format": pkg.format,
        }
    )
    if pkg.onnx_sha256:
        labels[LABEL_PREFIX + "model.onnx-sha256"] = pkg.onnx_sha256
    run_id = (info.run_id if info else None) or lineage.get("run_id")
    if run_id:
        labels[LABEL_PREFIX + "run-id"] = str(run_id)
    for dname, dinfo in (lineage.get("datasets") or {}).items():
        labels[f"{LABEL_PREFIX}dataset.{dname}.sha256"] = str(dinfo.get("sha256"))
    model_commit = (lineage.get("git") or {}).get("commit")
    if model_commit:  # the code that trained the model, which is what the image serves
        labels[LABEL_PREFIX + "git-commit"] = str(model_commit)
    return serve_recipe(base, name, version, skops=skops), version, info, registry


def data_context(
    config: ProjectConfig, ref: str | None, base: str, context: Path, labels: dict[str, str]
) -> tuple[Recipe, str]:
    """The dataset as a bundle (verified on the way out of the store)."""
    store = DatasetStore(config.artifact_root, config.root)
    snap = store.get(ref or _default_dataset(config))
    write_bundle(store, snap, context / "data")
    labels.update(
        {
            LABEL_PREFIX + "dataset.name": snap.name,
            LABEL_PREFIX + "dataset.version": str(snap.version),
            f"{LABEL_PREFIX}dataset.{snap.name}.sha256": snap.digest,
            LABEL_PREFIX + "dataset.source": public_uri(snap.source),
        }
    )
    return data_recipe(base), f"{snap.name}-{snap.version}"


def project_context(
    config: ProjectConfig,
    kind: str,
    base: str,
    context: Path,
    labels: dict[str, str],
    git: dict[str, Any],
) -> tuple[Recipe, str]:
    """train, test, notebook: the project's files, the full toolset and the kind's extras."""
    commit, dirty = git.get("commit"), bool(git.get("dirty"))
    _copy_project(config.root, context / "project")
    if commit:  # the image has no git: it carries what git says here
        remote = public_uri(str(git["remote"])) if git.get("remote") else None
        source = json.dumps({**git, "remote": remote}, indent=2) + "\n"
        (context / "project" / SOURCE_FILE).write_text(source, encoding="utf-8")
    has_requirements = (context / "project" / "requirements.txt").is_file()
    # The full toolset reaches an object store (s3fs, boto3): on Kubeflow the artifact
    # store is one, and a team's tracking server keeps its artifacts in one.
    full = [*_shipml_requirements(), *_shipml_requirements("s3")]
    write_lines(context / "requirements" / "full.txt", full)
    if kind == "test":
        write_lines(
            context / "requirements" / "test.txt", [pin("pytest"), *_shipml_requirements("test")]
        )
    if kind == "notebook":
        write_lines(
            context / "requirements" / "notebook.txt",
            [pin(d, NOTEBOOK_FALLBACK.get(d)) for d in NOTEBOOK],
        )
    store = DatasetStore(config.artifact_root, config.root)
    for snap in store.latest():
        labels[f"{LABEL_PREFIX}dataset.{snap.name}.sha256"] = snap.digest
    version = f"git-{commit[:12]}{'-dirty' if dirty else ''}" if commit else "latest"
    return project_recipe(kind, base, project_requirements=has_requirements), version


def _default_dataset(config: ProjectConfig) -> str:
    names = list(config.datasets) or DatasetStore(config.artifact_root, config.root).names()
    if len(names) == 1:
        return names[0]
    raise ContainerError(
        f"which dataset? the project has {len(names)} ({', '.join(names) or 'none'})",
        hint="name it: `shipml build data NAME[@VERSION]`",
    )
