"""The container engine: podman, docker or buildah, found on the PATH and driven through
its command line (the same commands a person would type).

podman and docker build and run; buildah only builds. Builds keep the layer cache
(``--layers``) and use the Docker image format so that ``HEALTHCHECK`` is kept (the OCI
image format has no place for it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.errors import ContainerError

ENGINES = ("podman", "docker", "buildah")
Log = Callable[[str], None]


@dataclass(frozen=True)
class ImageInfo:
    """What the engine knows about a local image."""

    id: str  # sha256:... of the image configuration: the image's content address
    size: int  # bytes, uncompressed
    labels: dict[str, str] = field(default_factory=dict)
    user: str = ""
    tags: list[str] = field(default_factory=list)


def _missing_engine(wanted: str | None) -> ContainerError:
    what = f"the container engine {wanted!r}" if wanted else "a container engine"
    return ContainerError(
        f"{what} is not installed here (looked for {', '.join([wanted] if wanted else ENGINES)} "
        "on the PATH)",
        hint="install podman (Debian/Ubuntu: apt-get install podman buildah runc) or docker, "
        "or choose another with --engine / [containers] engine",
    )


def find_engine(wanted: str | None = None) -> Engine:
    """The engine named ``wanted``, or else the first of podman, docker, buildah that works."""
    if wanted:
        if wanted not in ENGINES:
            raise ContainerError(
                f"unknown container engine {wanted!r}",
                hint=f"choose one of {', '.join(ENGINES)}",
            )
        path = shutil.which(wanted)
        if path is None:
            raise _missing_engine(wanted)
        return Engine(wanted, path)
    for name in ENGINES:
        path = shutil.which(name)
        if path is None:
            continue
        if name == "docker" and not _docker_daemon(path):
            continue  # a docker client without a daemon cannot build anything
        return Engine(name, path)
    raise _missing_engine(None)


def _docker_daemon(path: str) -> bool:
    try:
        probe = subprocess.run(
            [path, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@dataclass(frozen=True)
class Engine:
    name: str
    path: str

    @property
    def can_run(self) -> bool:
        return self.name != "buildah"

    # -- running the engine's own commands -------------------------------------------
    def _call(
        self,
        args: Sequence[str],
        *,
        log: Log | None = None,
        timeout: float = 3600,
        input_file: Any = None,
        what: str = "",
    ) -> str:
        """Run ``ENGINE args``; returns stdout. A failure raises ContainerError with the
        last lines of the output. With ``log`` every output line is passed on as it comes."""
        cmd = [self.path, *args]
        try:
            if log is None:
                done = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    stdin=input_file,
                    check=False,
                )
                out, code = done.stdout + done.stderr, done.returncode
                stdout = done.stdout
            else:
                proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=input_file,
                    text=True,
                    bufsize=1,
                )
                lines: list[str] = []
                assert proc.stdout is not None
                for line in proc.stdout:
                    lines.append(line)
                    log(line.rstrip("\n"))
                code = proc.wait(timeout=timeout)
                out = stdout = "".join(lines)
        except subprocess.TimeoutExpired as exc:
            raise ContainerError(
                f"{self.name} {what or args[0]} took longer than {timeout:.0f}s",
                hint="see the output above; retry, or raise the timeout",
            ) from exc
        except OSError as exc:
            raise ContainerError(
                f"cannot run {self.path}: {exc}", hint="check the engine's installation"
            ) from exc
        if code != 0:
            tail = "\n".join(out.strip().splitlines()[-15:])
            raise ContainerError(
                f"{self.name} {what or args[0]} failed (exit code {code}):\n{tail}",
                hint=_hint_for(out, self.name),
            )
        return stdout

    # -- images ------------------------------------------------------------------------
    def build(
        self,
        context: Path,
        containerfile: Path,
        *,
        tags: Sequence[str],
        labels: dict[str, str] | None = None,
        volumes: Sequence[str] = (),
        log: Log | None = None,
        no_cache: bool = False,
    ) -> str:
        """Build ``containerfile`` in ``context``; returns the image id (sha256:...).
        ``no_cache`` builds every layer again (a first build, for benchmarks)."""
        with tempfile.TemporaryDirectory(prefix="shipml-build-") as tmp:
            iidfile = Path(tmp) / "iid"
            args = ["bud"] if self.name == "buildah" else ["build"]
            if self.name in ("podman", "buildah"):
                args += ["--layers", "--format", "docker"]
                for volume in volumes:
                    args += ["--volume", volume]
            if no_cache:
                args.append("--no-cache")
            args += ["--file", str(containerfile), "--iidfile", str(iidfile)]
            for tag in tags:
                args += ["--tag", tag]
            for key, value in sorted((labels or {}).items()):
                args += ["--label", f"{key}={value}"]
            args.append(str(context))
            self._call(args, log=log, what="build")
            image_id = iidfile.read_text().strip()
        return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"

    def exists(self, image: str) -> bool:
        args = (
            ["inspect", "--type", "image", image]
            if self.name == "buildah"
            else ["image", "inspect", image]
        )
        try:
            self._call(args, timeout=60, what="inspect")
        except ContainerError:
            return False
        return True

    def inspect(self, image: str) -> ImageInfo:
        if self.name == "buildah":
            data = json.loads(
                self._call(["inspect", "--type", "image", image], timeout=60, what="inspect")
            )
            config = (data.get("Docker") or {}).get("config") or {}
            return ImageInfo(
                id="sha256:" + str(data.get("FromImageID", "")).removeprefix("sha256:"),
                size=0,
                labels=dict(config.get("Labels") or {}),
                user=str(config.get("User") or ""),
            )
        raw = self._call(["image", "inspect", image], timeout=60, what="inspect")
        data = json.loads(raw)[0]
        config = data.get("Config") or {}
        return ImageInfo(
            id="sha256:" + str(data["Id"]).removeprefix("sha256:"),
            size=int(data.get("Size") or 0),
            labels=dict(config.get("Labels") or data.get("Labels") or {}),
            user=str(config.get("User") or data.get("User") or ""),
            tags=list(data.get("RepoTags") or []),
        )

    def import_rootfs(self, rootfs: Path, tag: str, changes: Sequence[str] = ()) -> str:
        """Make an image of the folder ``rootfs`` (``podman import``); returns its id."""
        if self.name == "buildah":
            raise ContainerError(
                "buildah cannot import a root filesystem",
                hint="install podman or docker for `shipml base build`",
            )
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        args += ["-", tag]
        with subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        ) as tar:
            out = self._call(args, input_file=tar.stdout, what="import", timeout=1800)
            if tar.wait() != 0:
                raise ContainerError(f"tar of {rootfs} failed", hint="check the disk space")
        return "sha256:" + out.strip().splitlines()[-1].removeprefix("sha256:")

    def remove_image(self, image: str) -> None:
        args = ["rmi", image] if self.name == "buildah" else ["image", "rm", image]
        self._call(args, timeout=120, what="rmi")

    # -- containers ----------------------------------------------------------------------
    def run_command(
        self,
        image: str,
        args: Sequence[str] = (),
        *,
        ports: Sequence[str] = (),
        volumes: Sequence[str] = (),
        env: dict[str, str] | None = None,
        user: str | None = None,
        userns: str | None = None,
        read_only: bool = False,
        detach: bool = False,
        name: str | None = None,
        workdir: str | None = None,
        entrypoint: str | None = None,
        interactive: bool = False,
        unprivileged: bool = False,
    ) -> list[str]:
        """The ``ENGINE run ...`` command line. ``env`` is passed by name only: run it with
        those variables in the engine's environment (``run`` does). ``unprivileged``: no
        capability, none gained through a setuid program (even as uid 0, the container
        can then do only what the files' owners allow it)."""
        if not self.can_run:
            raise ContainerError(
                "buildah builds images but cannot run containers",
                hint="install podman (or docker) to run images, or pass --engine podman",
            )
        cmd = [self.path, "run", "--rm"]
        if detach:
            cmd.append("--detach")
        if interactive:
            cmd += ["--interactive", "--tty"]
        if name:
            cmd += ["--name", name]
        if read_only:
            cmd.append("--read-only")
        if user:
            cmd += ["--user", user]
        if userns:
            cmd += ["--userns", userns]
        if unprivileged:
            cmd += ["--cap-drop", "all", "--security-opt", "no-new-privileges"]
        if workdir:
            cmd += ["--workdir", workdir]
        if entrypoint is not None:
            cmd += ["--entrypoint", entrypoint]
        for port in ports:
            cmd += ["--publish", port]
        for volume in volumes:
            cmd += ["--volume", volume]
        for key in sorted(env or {}):
            # Only the name: the engine takes the value from its own environment (see
            # ``run``), so no value (a token, a URI with a password) shows in `ps`.
            cmd += ["--env", key]
        return [*cmd, image, *args]

    def run(self, image: str, args: Sequence[str] = (), **options: Any) -> int:
        """Run a container in the foreground, its output on this terminal; returns its exit
        code. Ctrl-C, SIGTERM or SIGHUP (a closed terminal, a cancelled job) stops the
        container too: the engine's client is never left running it behind."""
        name = options.pop("name", None) or f"shipml-{uuid.uuid4().hex[:12]}"
        env = {**os.environ, **(options.get("env") or {})}
        cmd = self.run_command(image, args, name=name, **options)
        previous: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):  # before the client starts
                previous[sig] = signal.signal(sig, on_signal)
        proc = None
        try:
            proc = subprocess.Popen(cmd, env=env)
            return proc.wait()
        except KeyboardInterrupt:
            self.stop(name)
            if proc is not None:
                proc.wait(timeout=60)
            return 130
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop(self, container: str, timeout: int = 10) -> None:
        subprocess.run(
            [self.path, "stop", "--time", str(timeout), container],
            capture_output=True,
            timeout=timeout + 60,
            check=False,
        )


def _hint_for(output: str, engine: str) -> str:
    """What to do about a failed engine command, from what it printed."""
    low = output.lower()
    if "cgroups in hybrid mode" in low or ("crun" in low and "cgroup" in low):
        return (
            'the crun runtime does not work here: set runtime = "runc" in a '
            "containers.conf (see docs/containers.md, 'Podman on CI machines')"
        )
    if "setrlimit" in low:
        return (
            "lower podman's default ulimits in containers.conf (see docs/containers.md, "
            "'Podman on CI machines')"
        )
    if (
        "initializing source" in low
        or "pinging container registry" in low
        or ("manifest unknown" in low)
    ):
        return (
            "the base image cannot be pulled: make one offline with `shipml base build` and "
            'set [containers] base_image = "localhost/shipml-base:bookworm"'
        )
    if "certificate verify failed" in low or ("ssl" in low and "pip" in low):
        return (
            "pip inside the build does not trust the package index's certificate: add the "
            "host's CA bundle to [containers] build_volumes"
        )
    if "cannot connect to the docker daemon" in low:
        return "start the docker daemon, or install podman and pass --engine podman"
    return f"see {engine}'s output above"
