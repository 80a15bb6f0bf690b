"""Running the project's images on this machine: the pipeline in the train image
(``shipml run --in-container``) and JupyterLab, here or in the notebook image
(``shipml notebook [--container]``).

The store (MLflow database, artifacts, pipeline cache, audit log) is mounted into the
container at the same absolute path it has here, and passed by URI through
``SHIPML_*`` variables, so that every path MLflow records is valid on both sides.
The container runs as the caller (root stays root; rootless podman maps the caller's
uid with ``--userns keep-id``), so what it writes in the store belongs to the caller.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from shipml.config import ProjectConfig
from shipml.containers.containerfile import NOTEBOOK_PORT
from shipml.containers.engine import Engine, Log, find_engine
from shipml.containers.image import build_image
from shipml.errors import ContainerError
from shipml.processes import cannot_listen, run_in_foreground

SQLITE = "sqlite:///"


def store_mounts(config: ProjectConfig) -> tuple[list[str], dict[str, str]]:
    """The volumes (``HOST:CONTAINER``) and ``SHIPML_*`` variables that give a container
    the project's store. Remote stores (a server, PostgreSQL, s3://) pass by URI only."""
    folders: list[Path] = []
    env: dict[str, str] = {}
    for var, uri in (
        ("SHIPML_TRACKING_URI", config.tracking_uri),
        ("SHIPML_TRACKING_REGISTRY_URI", config.registry_uri),
    ):
        env[var] = uri
        if uri.startswith(SQLITE) and uri != SQLITE + ":memory:":
            folders.append(Path(uri[len(SQLITE) :]).parent)
    env["SHIPML_ARTIFACTS_ROOT"] = config.artifact_root
    if "://" not in config.artifact_root:
        folders.append(Path(config.artifact_root))
    env["SHIPML_PIPELINE_CACHE_DIR"] = str(config.cache_dir)
    folders.append(config.cache_dir)
    audit = config.audit
    if audit.enabled and "://" not in audit.path:
        for var, value in (
            ("SHIPML_AUDIT_PATH", audit.path),
            ("SHIPML_AUDIT_SIGNING_KEY", audit.signing_key),
            ("SHIPML_AUDIT_CHECKPOINT_DIR", audit.checkpoint_dir),
        ):
            path = config.path(value)
            env[var] = str(path)
            folders.append(path if var.endswith("DIR") else path.parent)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    resolved = sorted({f.resolve() for f in folders}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for folder in resolved:
        if not any(folder.is_relative_to(k) for k in kept):
            kept.append(folder)
    return [f"{f}:{f}" for f in kept], env


def caller_identity(engine: Engine) -> dict[str, str]:
    """Run options that make the container write files as the caller."""
    if os.geteuid() == 0:
        return {"user": "0:0"}
    if engine.name == "podman":
        return {"userns": "keep-id"}
    return {"user": f"{os.getuid()}:{os.getgid()}"}


def run_in_container(
    config: ProjectConfig,
    args: Sequence[str] = (),
    *,
    engine: Engine | str | None = None,
    log: Log | None = None,
) -> int:
    """Build the train image (cached), then run ``shipml run ARGS`` in it with the store
    mounted; returns the container's exit code."""
    if not isinstance(engine, Engine):
        engine = find_engine(engine or config.containers.engine or None)
    if not engine.can_run:
        raise ContainerError(
            "buildah builds images but cannot run them",
            hint="install podman (or docker), or pass --engine podman",
        )
    image = build_image(config, "train", engine=engine, log=log)
    volumes, env = store_mounts(config)
    env["HOME"] = "/tmp"
    if log:
        log(f"running the pipeline in {image.name} ({image.id[:19]})")
    return engine.run(image.id, ["run", *args], volumes=volumes, env=env, **caller_identity(engine))


def jupyter_command(root: Path, *, host: str, port: int, browser: bool) -> list[str]:
    """The JupyterLab command line for a project (no token in it: that goes by the
    JUPYTER_TOKEN variable, never on a command line other users can read)."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError as exc:
        raise ContainerError(
            "JupyterLab is not installed in this Python environment",
            hint="pip install jupyterlab (or run it in the notebook image: "
            "`shipml notebook --container`)",
        ) from exc
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--ServerApp.ip={host}",
        f"--ServerApp.port={port}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
    ]
    if not browser:
        cmd.append("--no-browser")
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def run_notebook(
    config: ProjectConfig,
    *,
    host: str = "127.0.0.1",
    port: int = NOTEBOOK_PORT,
    browser: bool = True,
    container: bool = False,
    engine: Engine | str | None = None,
    log: Log | None = None,
) -> int:
    """JupyterLab on the project: here, or in the notebook image with the project folder
    and the store mounted. Returns its exit code when it stops.

    In the container, JupyterLab runs as the caller (see ``caller_identity``) with no
    capability and no way to gain one: a root caller's container is root only over the
    files root owns in the mounted folders (anyone with the token runs code there)."""
    reason = cannot_listen(host, port) if port else "port 0 is no fixed port to open"
    if reason is not None:
        raise ContainerError(
            f"cannot listen for JupyterLab on {host}:{port}: {reason}",
            hint="choose another --port (1 to 65535), or stop what listens there "
            "(an earlier `shipml notebook`?)",
        )
    env = {**os.environ, "SHIPML_PROJECT": str(config.root)}
    if not container:
        return run_in_foreground(
            jupyter_command(config.root, host=host, port=port, browser=browser), env=env
        )
    if not isinstance(engine, Engine):
        engine = find_engine(engine or config.containers.engine or None)
    image = build_image(config, "notebook", engine=engine, log=log)
    volumes, store_env = store_mounts(config)
    root = str(config.root)
    volumes.insert(0, f"{root}:{root}")
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    store_env.update(JUPYTER_TOKEN=token, HOME="/tmp", SHIPML_PROJECT=root)
    if log:
        log(f"JupyterLab in {image.name}: http://{host}:{port}/lab?token={token}")
    return engine.run(
        image.id,
        ["notebook", "--host", "0.0.0.0", "--port", str(NOTEBOOK_PORT), "--no-browser"],
        ports=[f"{host}:{port}:{NOTEBOOK_PORT}"],
        volumes=volumes,
        env=store_env,
        workdir=root,
        unprivileged=True,
        **caller_identity(engine),
    )
