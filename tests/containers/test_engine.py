"""Finding the engine: a missing or unknown engine is a clear error, not a traceback."""

from __future__ import annotations

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
