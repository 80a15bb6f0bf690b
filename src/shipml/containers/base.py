"""Base images without a registry: a Debian root filesystem with Python, bootstrapped from
Debian's package mirror with debootstrap and imported into the engine.

For offline and air-gapped machines, and for CI machines that cannot reach a registry:
``shipml base build`` makes ``localhost/shipml-base:bookworm`` (about 45 seconds and
300 MB); set ``[containers] base_image`` to it and every shipml image builds from it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from shipml.containers.engine import Engine, Log
from shipml.errors import ContainerError
from shipml.files import exclusive_lock

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
SUITE_RE = re.compile(r"^[a-z][a-z0-9-]{1,30}$")


def default_tag(suite: str = DEFAULT_SUITE) -> str:
    return f"localhost/shipml-base:{suite}"


@dataclass(frozen=True)
class BaseImage:
    tag: str
    id: str
    built: bool  # False: the tag was already there and was reused
    seconds: float
    suite: str
    mirror: str


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt already uses on this machine (deb822 or one-line format), or
    deb.debian.org."""
    for file in sorted((sources / "sources.list.d").glob("*.sources")):
        match = re.search(r"^URIs:\s*(\S+)", file.read_text(errors="replace"), re.M)
        if match and "security" not in match.group(1):
            return match.group(1)
    one_line = sources / "sources.list"
    if one_line.is_file():
        for line in one_line.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[2] if parts[1].startswith("[") else parts[1]
    return DEFAULT_MIRROR


def _debootstrap() -> str:
    """debootstrap's path; it must be installed and run as root."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ContainerError(
            "debootstrap is not installed here; it makes the base image from Debian's packages",
            hint="apt-get install debootstrap (or set [containers] base_image to an image you "
            "can pull, e.g. python:3.11-slim)",
        )
    if os.geteuid() != 0:
        raise ContainerError(
            f"debootstrap needs root to make a root filesystem (running as uid {os.geteuid()})",
            hint="run `sudo shipml base build`, or use a base image you can pull",
        )
    return debootstrap


def _bootstrap(debootstrap: str, suite: str, rootfs: Path, mirror: str, log: Log | None) -> None:
    """A minimal Debian ``suite`` root filesystem in ``rootfs`` from ``mirror``."""
    cmd = [
        debootstrap,
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        suite,
        str(rootfs),
        mirror,
    ]
    if log:
        log(" ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        raise ContainerError(
            f"debootstrap of {suite} from {mirror} failed (exit code {done.returncode}):\n{tail}",
            hint="check that the mirror is reachable (it is the one apt uses here)",
        )


def build_base(
    engine: Engine,
    *,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    tag: str | None = None,
    rebuild: bool = False,
    log: Log | None = None,
) -> BaseImage:
    """Make a Debian ``suite`` image with Python 3, venv, pip and CA certificates, tagged
    ``tag``; an existing ``tag`` is reused unless ``rebuild``. Processes on one machine
    build a tag one at a time: the second waits and reuses the first's (two `shipml build`
    on a fresh machine bootstrapped Debian twice, side by side)."""
    if not SUITE_RE.match(suite):
        raise ContainerError(f"invalid Debian suite {suite!r}", hint="for example bookworm")
    tag = tag or default_tag(suite)
    mirror = mirror or apt_mirror()
    started = time.perf_counter()
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)
    with exclusive_lock(Path(tempfile.gettempdir()) / f"shipml-base-{os.getuid()}-{name}.lock"):
        if not rebuild and engine.exists(tag):
            info = engine.inspect(tag)
            return BaseImage(tag, info.id, False, time.perf_counter() - started, suite, mirror)
        image_id = _build(engine, suite, tag, mirror, log)
    return BaseImage(tag, image_id, True, time.perf_counter() - started, suite, mirror)


def _build(engine: Engine, suite: str, tag: str, mirror: str, log: Log | None) -> str:
    """Bootstrap ``suite`` and import it as ``tag``; the image id."""
    debootstrap = _debootstrap()
    work = Path(tempfile.mkdtemp(prefix="shipml-base-", dir="/var/tmp"))
    rootfs = work / "rootfs"
    try:
        _bootstrap(debootstrap, suite, rootfs, mirror, log)
        # A slimmer image: package lists and caches are not needed at run time.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        labels = {
            "org.opencontainers.image.title": "shipml-base",
            "org.opencontainers.image.description": f"Debian {suite} with Python 3",
            "org.opencontainers.image.created": created,
            "io.shipml.base.suite": suite,
            "io.shipml.base.packages": ",".join(PACKAGES),
        }
        changes = ['CMD ["python3"]', "ENV LANG=C.UTF-8"]
        changes += [f"LABEL {key}={json.dumps(value)}" for key, value in labels.items()]
        if log:
            log(f"importing the root filesystem as {tag}")
        return engine.import_rootfs(rootfs, tag, changes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
