"""Shared fixtures: real projects made by the template, real MLflow stores in tmp folders."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipml.config import ProjectConfig, load_config
from shipml.templates import create_project

SHIPML = [sys.executable, "-m", "shipml"]

pytest_plugins = ["tests.containers.images"]  # podman, the base and the built images


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("SHIPML_"):
            monkeypatch.delenv(var)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh project from the template (with its git repository)."""
    return create_project(tmp_path / "penguins", "penguins")


@pytest.fixture
def config(project: Path) -> ProjectConfig:
    return load_config(project)


@contextlib.contextmanager
def files_limited_to(nbytes: int) -> Iterator[None]:
    """A real write fault without a full disk: no file of this process may grow past
    ``nbytes`` (RLIMIT_FSIZE; the write fails with EFBIG, as a full disk fails with ENOSPC)."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    saved = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, saved)


def shipml(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `shipml` command in a subprocess: for what only a process shows (the
    console script, signals, an exit without a traceback, what reaches a terminal)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    full_env.update(env or {})
    return subprocess.run(
        [*SHIPML, *args], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=600
    )


def shipml_here(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `shipml` command line in this process, as `shipml()` does in a
    subprocess: ``shipml.cli.main``, so the same parsing, library calls, rendering and exit
    codes as the console script, in folder ``cwd``, with ``env`` added to an environment
    without SHIPML_ variables. What it and the processes it starts print is captured at
    the file descriptors. For tests of what a command does: it spares starting an
    interpreter that imports MLflow (about 2 s of CPU a command). The working folder,
    the environment and the CLI's global options are put back afterwards."""
    from shipml.cli import main
    from shipml.cli.output import state
    from shipml.cli.output import stderr as err_console
    from shipml.cli.output import stdout as out_console

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    for name in [k for k in os.environ if k.startswith("SHIPML_")]:
        del os.environ[name]
    os.environ.update(env or {})
    # rich reads COLUMNS when a console is made (at import, here long ago; xdist workers
    # have COLUMNS=80) and a subprocess would read it at its start: so set it as one would.
    consoles = (out_console, err_console)
    widths = [console._width for console in consoles]
    columns = (env or {}).get("COLUMNS", "")
    if columns.isdigit():
        for console in consoles:
            console.width = int(columns)
    streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        for stream in streams:
            stream.flush()
        saved_fds = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        try:
            os.chdir(cwd)
            code = main(list(args))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
            for fd, saved in zip((1, 2), saved_fds, strict=True):
                os.dup2(saved, fd)
                os.close(saved)
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            state.project = None
            state.debug = False
            for console, width in zip(consoles, widths, strict=True):
                console._width = width
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
        stderr = err.read().decode("utf-8", errors="replace")
    return subprocess.CompletedProcess(["shipml", *args], code, stdout, stderr)


def forget_s3_clients() -> None:
    """Drop the S3 clients this process keeps, before a test points it at another
    endpoint: fsspec keeps one S3FileSystem per set of arguments, and MLflow keeps its
    boto3 client for 5 minutes keyed without AWS_ENDPOINT_URL, so a client made by an
    earlier test of the same worker would talk to that test's (stopped) server."""
    from mlflow.store.artifact.s3_artifact_repo import _cached_get_s3_client
    from s3fs import S3FileSystem

    S3FileSystem.clear_instance_cache()
    _cached_get_s3_client.cache_clear()


def wait_until_ready(port: int, timeout: float = 60.0) -> None:
    import http.client
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing became ready on port {port}")


def hammer_then_kill(
    port: int,
    bodies: list[bytes],
    proc: subprocess.Popen[bytes],
    clients: int = 8,
    seconds: float = 2.0,
) -> list[str]:
    """POST /predict from several clients, SIGKILL ``proc`` mid-load; returns the request
    ids that were answered 200 before it died."""
    import http.client
    import signal
    import threading
    import time

    answered: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(1_000_000):
            rid = f"k{n}-{i}"
            try:
                conn.request(
                    "POST",
                    "/predict",
                    bodies[i % len(bodies)],
                    {"Content-Type": "application/json", "X-Request-ID": rid},
                )
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                return  # the process was killed
            if resp.status == 200:
                with lock:
                    answered.append(rid)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    for t in threads:
        t.join(timeout=30)
    return answered


def _processes() -> Iterator[tuple[int, list[str]]]:
    """Each process's id and the fields of /proc/PID/stat after its name (state, parent,
    group, session, ...)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), stat.rsplit(")", 1)[1].split()


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    return [child for child, fields in _processes() if int(fields[1]) == pid]


def session_commands(session: int) -> list[str]:
    """The command lines of the processes in session ``session`` (read from /proc)."""
    found = []
    for pid, fields in _processes():
        if int(fields[3]) == session:
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                found.append(command.replace(b"\0", b" ").decode())
    return found


# Tests that drive podman share one engine, its image store and built-image fixtures:
# under pytest-xdist (`make test` runs `-n` workers with `--dist loadgroup`) they run on
# one worker, in order, so each image is built once and no two builds race for a tag or
# build the same dependency layer side by side. These files, and the tests elsewhere
# marked ``@pytest.mark.xdist_group(PODMAN)`` (the CI journeys that build images). Those
# two were once a group of their own on another worker: the suite took longer (814 s
# against 788 s on clean clones), the GitHub workflow journey 268 s against 198 s, its
# image layers being built beside the same layers of the container tests instead of
# coming from podman's cache.
PODMAN = "podman"
PODMAN_FILES = (
    "tests/cli/test_containers.py",
    "tests/containers/",
    "tests/deploy/test_podman.py",
    "tests/e2e/test_kubeflow.py",
)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every other module is a group of its own: its module-scoped fixtures (a trained
    model, a running server, a journey's project) are made once, and tests that build on
    the one before them (a journey in steps) run in order on one worker."""
    root = Path(__file__).resolve().parent.parent
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue  # a group the module chose (modules sharing one fixture's project)
        where = Path(str(item.path)).resolve().relative_to(root).as_posix()
        group = PODMAN if where.startswith(PODMAN_FILES) else where
        item.add_marker(pytest.mark.xdist_group(group))
    _longest_groups_first(items)


# Seconds each long group took in `make test` (its tests' wall time, setup included, on
# three workers on the 2-core machine, 2026-12-04): the groups are handed to the workers
# longest first, so the run does not end with one worker on a long journey while the
# others idle (`make test` passes --no-loadscope-reorder, which keeps this order). A
# group not listed counts as short; the figures only order the run, nothing checks them.
LONG_GROUPS = {
    PODMAN: 860,
    "tests/model/test_journeys.py": 176,
    "tests/templates/test_table.py": 141,
    "tests/project/test_tune.py": 126,
    "tests/tracking/test_worker.py": 96,
    "tests/testing/test_journey.py": 77,
    "tests/e2e/test_team.py": 71,
    "tests/cicd/test_runner.py": 48,
    "tests/cli/test_errors.py": 61,
    "tests/serving/test_server.py": 56,
    "tests/testing/test_browser.py": 53,
    "tests/report/test_report.py": 51,
    "tests/monitor/test_journey.py": 31,
    "tests/cli/test_commands.py": 28,
    "tests/cli/test_rollout.py": 25,
    "tests/rollout/test_gateway.py": 24,
    "tests/pipeline/test_runner.py": 23,
    "tests/templates/test_template.py": 22,
    "tests/cicd/test_workflows.py": 21,
    "tests/cicd/test_install.py": 20,
}


def _longest_groups_first(items: list[pytest.Item]) -> None:
    """Reorder ``items`` group by group, longest group first (then the group with more
    tests, then the order collected); a group's own tests keep their order."""
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        name = str(marker.args[0]) if marker and marker.args else item.nodeid
        groups.setdefault(name, []).append(item)
    order = sorted(
        enumerate(groups.items()),
        key=lambda entry: (-LONG_GROUPS.get(entry[1][0], 0), -len(entry[1][1]), entry[0]),
    )
    items[:] = [item for _, (_, members) in order for item in members]
