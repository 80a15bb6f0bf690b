"""The code version a run records: never a credential from the git remote's URL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shipml.tracking.environment import SOURCE_FILE, git_info

TOKEN = "glpat-s3cr3tT0ken"


@pytest.mark.parametrize(
    ("remote", "public"),
    [
        (
            f"https://gitlab-ci-token:{TOKEN}@gitlab.example.com/team/p.git",
            "https://gitlab.example.com/team/p.git",
        ),
        (f"https://{TOKEN}@github.com/org/p.git", "https://github.com/org/p.git"),
        (f"https://u:p%40ss@{TOKEN}@host:8443/p", "https://host:8443/p"),
        ("git@github.com:org/p.git", "git@github.com:org/p.git"),
        ("https://github.com/org/p.git", "https://github.com/org/p.git"),
    ],
)
def test_the_git_remote_is_recorded_without_its_credentials(tmp_path: Path, remote, public):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    git("remote", "add", "origin", remote)
    info = git_info(tmp_path)
    assert info["commit"] and info["remote"] == public
    assert TOKEN not in json.dumps(info)


def test_a_baked_source_file_is_read_without_credentials(tmp_path: Path):
    baked = {"commit": "abc", "branch": "main", "dirty": False}
    remote = f"https://ci:{TOKEN}@host/p.git"
    (tmp_path / SOURCE_FILE).write_text(json.dumps({**baked, "remote": remote}))
    assert git_info(tmp_path) == {**baked, "remote": "https://host/p.git"}


def test_the_environment_is_recorded_when_its_cache_cannot_be_written(tmp_path: Path):
    # a full disk made the run's summary (environment.json) fail with an OSError traceback
    from shipml.tracking.environment import environment
    from tests.conftest import files_limited_to

    with files_limited_to(256):
        env = environment(cache_dir=tmp_path)
    assert env["python"] and env["packages"]
    assert list(tmp_path.iterdir()) == []
