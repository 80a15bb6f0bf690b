"""How a CI job installs shipml: ``[ci] install``, by default the exact version and source
that generated the workflow, and a virtual environment where ``shipml ci run`` runs that
same line before the stages.

The default follows how shipml is installed here (its ``direct_url.json``, PEP 610):

    from a git repository   pip install "shipml @ git+URL@COMMIT"
    from a local checkout    a wheel built by `shipml ci init` into the project's ci/
    or a local wheel         folder (commit it): pip install ./ci/shipml-VERSION-...whl
    from a package index     pip install shipml==VERSION (with --index-url [ci] index_url)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from shipml.config import ProjectConfig
from shipml.errors import CIError

WHEEL_DIR = "ci"  # in the project: the wheel the workflows install
VENV = ".shipml/ci/venv"  # where `shipml ci run` installs
STAMP = ".shipml-install"  # in the venv: the line (and wheel digests) it was made with


@dataclass(frozen=True)
class Source:
    kind: str  # custom | git | wheel | index
    line: str  # the shell line a job runs
    wheel_from: Path | None = None  # wheel: a checkout to build, or a wheel file to copy


def _direct_url() -> dict[str, object] | None:
    try:
        text = metadata.distribution("shipml").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    return json.loads(text) if text else None


def _wheel_name(version: str) -> str:
    return f"shipml-{version}-py3-none-any.whl"


# user:PASSWORD@ in a URL, unless the password is a variable ($TOKEN, ${{ secrets.X }})
_CREDENTIALS = re.compile(r"://[^\s/@:]*:(?![$])[^\s/@]+@")


def _no_credentials(what: str, text: str) -> None:
    """The install line is written into the workflow file (committed) and printed by
    `shipml ci run`: a password in it would be readable by everyone who reads either."""
    if _CREDENTIALS.search(text):
        raise CIError(
            f"{what} has a password in a URL; the workflow file and the CI logs would show it",
            hint="give the index to pip as a CI secret instead: PIP_INDEX_URL (pip reads it), "
            'with [ci] install = "pip install shipml" (or write $VARIABLE in the URL)',
        )


def source(config: ProjectConfig) -> Source:
    """Where the workflows install shipml from (nothing is built here)."""
    ci = config.ci
    _no_credentials("[ci] install", ci.install)
    _no_credentials("[ci] index_url", ci.index_url)
    if ci.install:
        return Source("custom", ci.install)
    version = metadata.version("shipml")
    if ci.index_url:
        line = shlex.join(["pip", "install", "--index-url", ci.index_url, f"shipml=={version}"])
        return Source("index", line)
    direct = _direct_url()
    if direct is None:
        return Source("index", shlex.join(["pip", "install", f"shipml=={version}"]))
    url = str(direct.get("url", ""))
    vcs = direct.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") == "git":
        spec = f"shipml @ git+{url}@{vcs.get('commit_id')}"
        return Source("git", shlex.join(["pip", "install", spec]))
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return Source("index", shlex.join(["pip", "install", f"shipml @ {url}"]))
    wheel = f"./{WHEEL_DIR}/{_wheel_name(version)}"
    return Source("wheel", shlex.join(["pip", "install", wheel]), Path(unquote(parsed.path)))


def prepare(
    config: ProjectConfig, log: Callable[[str], None] | None = None, *, rebuild: bool = True
) -> Source:
    """The install source, with its wheel built (or copied) into ``ci/`` when it is one:
    anew with ``rebuild`` (`shipml ci init`), else only when it is missing (`shipml ci
    run` installs the wheel the workflows install, the one committed)."""
    found = source(config)
    if found.kind != "wheel" or found.wheel_from is None:
        return found
    target = config.root / WHEEL_DIR
    target.mkdir(parents=True, exist_ok=True)
    name = _wheel_name(metadata.version("shipml"))
    if not rebuild and (target / name).is_file():
        return found
    for old in target.glob("shipml-*.whl"):
        old.unlink()
    origin = found.wheel_from
    if origin.is_file() and origin.suffix == ".whl":
        shutil.copyfile(origin, target / name)
        return found
    if log:
        log(f"building {WHEEL_DIR}/{name} from {origin}")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(target), str(origin)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    built = target / name
    if done.returncode != 0 or not built.is_file():
        raise CIError(
            f"cannot build the shipml wheel from {origin}: {done.stderr.strip()[-300:]}",
            hint="or set [ci] install to a line that installs shipml (a git URL, an index)",
        )
    return found


def _digests(root: Path) -> list[str]:
    return [
        f"{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()}"
        for p in sorted((root / WHEEL_DIR).glob("*.whl"))
    ]


def layered_venv(folder: Path) -> Path:
    """A virtual environment over this one: the packages installed here are seen (and not
    installed again), shipml's own code is not: the install line must bring it. Returns
    its python. Its ``pip`` is this environment's pip, run by its own python (so it
    installs into it): `venv` would otherwise install a copy of pip, 3 s of CPU each. An
    environment without pip (one made by uv, say) gets venv's own."""
    if folder.exists():
        shutil.rmtree(folder)
    own_pip = importlib.util.find_spec("pip") is None
    subprocess.run(
        [sys.executable, "-m", "venv", *([] if own_pip else ["--without-pip"]), str(folder)],
        check=True,
        timeout=300,
    )
    python = folder / "bin" / "python"
    for name in () if own_pip else ("pip", "pip3"):
        script = folder / "bin" / name
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(str(python))} -m pip "$@"\n')
        script.chmod(0o755)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_shipml_base.pth").write_text("".join(f"{p}\n" for p in sorted(paths)))
    return python


def install(config: ProjectConfig, emit: Callable[[str], None]) -> Path:
    """Run the install line, as a CI job does, in ``.shipml/ci/venv`` (kept while the line
    and the wheels are the same); returns the python the stages run with."""
    found = prepare(config, emit, rebuild=False)
    folder = config.path(VENV)
    stamp = "\n".join([found.line, *_digests(config.root)])
    python = folder / "bin" / "python"
    if python.is_file() and (folder / STAMP).is_file() and (folder / STAMP).read_text() == stamp:
        return python
    python = layered_venv(folder)
    emit(f"$ {found.line}")
    env = {**os.environ, "VIRTUAL_ENV": str(folder), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env["PATH"] = f"{folder / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(
        ["bash", "-eo", "pipefail", "-c", found.line],
        cwd=config.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    tail = ""
    for line in proc.stdout:
        emit(line.rstrip("\n"))
        tail = line.strip() or tail
    if proc.wait() != 0:
        raise CIError(
            f"the install line failed (exit code {proc.returncode}): {tail[:300]}",
            hint=f"`{found.line}` is [ci] install (docs/cicd.md); fix it or its source",
        )
    where = subprocess.run(
        [str(python), "-c", "import shipml; print(shipml.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if where.returncode != 0 or not where.stdout.strip().startswith(str(folder)):
        raise CIError(
            f"`{found.line}` ran but did not install shipml",
            hint="[ci] install must install shipml (docs/cicd.md)",
        )
    (folder / STAMP).write_text(stamp)
    return python
