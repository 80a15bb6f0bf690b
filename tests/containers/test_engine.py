"""Finding the engine: a missing or unknown engine is a clear error, not a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from shipml.config import ProjectConfig
from shipml.containers import find_engine, store_mounts
from shipml.errors import ContainerError


def test_no_engine_on_the_path_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ContainerError) as info:
        find_engine()
    assert "podman, docker, buildah" in info.value.message
    assert "apt-get install podman" in (info.value.hint or "")
    with pytest.raises(ContainerError, match="'podman' is not installed"):
        find_engine("podman")


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ContainerError) as info:
        find_engine("rkt")
    assert info.value.exit_code == 15 and "podman, docker, buildah" in (info.value.hint or "")


def test_buildah_cannot_run_containers() -> None:
    from shipml.containers import Engine

    with pytest.raises(ContainerError, match="cannot run"):
        Engine("buildah", "/usr/bin/buildah").run_command("img")


def test_store_mounts_share_the_store_at_the_same_path(config: ProjectConfig) -> None:
    volumes, env = store_mounts(config)
    store = str((config.root / ".shipml").resolve())
    assert volumes == [f"{store}:{store}"]
    assert env["SHIPML_TRACKING_URI"] == f"sqlite:///{store}/mlflow.db"
    assert env["SHIPML_ARTIFACTS_ROOT"] == f"{store}/artifacts"
    assert env["SHIPML_PIPELINE_CACHE_DIR"] == f"{store}/cache"
    assert env["SHIPML_AUDIT_PATH"] == f"{store}/audit/audit.db"


def test_run_passes_variables_by_name_only() -> None:
    from shipml.containers import Engine

    cmd = Engine("podman", "/usr/bin/podman").run_command(
        "img",
        ["run"],
        env={"SHIPML_TRACKING_URI": "postgresql://u:s3cret@db/mlflow"},
        read_only=True,
        user="0:0",
        volumes=["/a:/a"],
        ports=["127.0.0.1:1:2"],
    )
    assert not any("s3cret" in part for part in cmd)  # a password never shows in `ps`
    assert cmd[:3] == ["/usr/bin/podman", "run", "--rm"] and cmd[-2:] == ["img", "run"]
    assert cmd[cmd.index("--env") : cmd.index("--env") + 2] == ["--env", "SHIPML_TRACKING_URI"]
    assert "--read-only" in cmd and cmd[cmd.index("--user") :][:2] == ["--user", "0:0"]


RUN_SLEEP = """import sys
from shipml.containers import find_engine
sys.exit(find_engine("podman").run(sys.argv[1], ["300"], entrypoint="sleep", name=sys.argv[2]))
"""


def test_a_hangup_stops_the_container_with_the_command(base_image: str) -> None:
    """SIGHUP (a closed terminal, a cancelled job) left `podman run` and its container
    running on their own (`shipml notebook --container` kept its port), as only Ctrl-C and
    SIGTERM were handled."""
    name = f"shipml-test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", RUN_SLEEP, base_image, name])
    running = ["podman", "ps", "--filter", f"name=^{name}$", "--format", "{{.Names}}"]
    try:
        deadline = time.monotonic() + 60
        while name not in subprocess.run(running, capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline and proc.poll() is None, "it did not start"
            time.sleep(0.2)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=90) == 130
        assert name not in subprocess.run(running, capture_output=True, text=True).stdout
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)
