"""What produced a result: the code version (git) and the software environment."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_PACKAGES = (
    "shipml",
    "mlflow",
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "skops",
    "numpy",
    "pandas",
    "pyarrow",
)


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# Written into the project copy of an image (where there is no git) by `shipml build`.
SOURCE_FILE = ".shipml-source.json"


def public_remote(url: str | None) -> str | None:
    """A git remote URL without its user name and password: CI clones often embed a token
    there (``https://gitlab-ci-token:TOKEN@host/...``, ``https://TOKEN@github.com/...``),
    and the remote goes into every run's lineage and every model package."""
    if not url or "://" not in url:
        return url  # None, or scp-like ``git@host:org/repo`` (no password can be there)
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def git_info(root: Path) -> dict[str, Any]:
    """Commit, branch and whether the work tree has uncommitted changes (None outside git).

    Inside a shipml image, where the project is a copy without git, the values recorded
    when the image was built (``.shipml-source.json``) are returned."""
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        baked = root / SOURCE_FILE
        if baked.is_file():
            try:
                data = json.loads(baked.read_text(encoding="utf-8"))
                found = {k: data.get(k) for k in ("commit", "branch", "dirty", "remote")}
                return {**found, "remote": public_remote(found["remote"])}
            except ValueError:
                pass
        return {"commit": None, "branch": None, "dirty": None}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "branch": _git(root, "rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status),
        "remote": public_remote(_git(root, "config", "--get", "remote.origin.url")),
    }


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def environment(cache_dir: Path | None = None, project_root: Path | None = None) -> dict[str, Any]:
    """Python, platform and every installed distribution with its version.

    Listing distributions takes a few tenths of a second; with ``cache_dir`` the answer
    is kept, keyed by the modification times of the import path's folders (an install
    changes them). The current folder and ``project_root`` are left out: their times
    change with every file a user saves, and distributions are not installed there."""
    if cache_dir is not None:
        skip = {"", os.getcwd(), str(project_root or "")}
        stamp = [
            (p, os.stat(p).st_mtime_ns) for p in sys.path if p not in skip and os.path.isdir(p)
        ]
        key = hashlib.sha256(json.dumps([sys.version, stamp]).encode()).hexdigest()[:24]
        file = cache_dir / f"environment-{key}.json"
        if file.is_file():
            try:
                return dict(json.loads(file.read_text(encoding="utf-8")))
            except ValueError:
                pass
        env = environment()
        tmp = file.with_suffix(f".tmp{os.getpid()}")
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(env), encoding="utf-8")
            os.replace(tmp, file)
        except OSError:  # a full or read-only disk: only the next run is slower
            tmp.unlink(missing_ok=True)
        return env
    installed = sorted(
        {(d.metadata["Name"] or "?").lower(): d.version for d in metadata.distributions()}.items()
    )
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": dict(installed),
    }
