"""Real images built with a real engine (podman), shared by the whole session.

The base image is made once with debootstrap (no registry) and reused by tag; each kind
is built once per session from one project whose pipeline ran for real. Without podman
the tests that need it are skipped, except in CI (CI=true), where that is a failure.

A plugin of the whole suite (`pytest_plugins` in tests/conftest.py), not a conftest:
the container, CI and end-to-end tests then share one fixture each, so a worker builds
an image once (a fixture imported into two conftests is two fixtures, each built).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from shipml.config import ProjectConfig, load_config
from shipml.containers import BuiltImage, Engine, build_base, build_image, find_engine
from shipml.pipeline import run_pipeline
from shipml.project.promotion import promote
from shipml.templates import create_project

PROJECT = "ctpenguins"  # a name of its own, so images do not collide with other projects


def need_podman() -> Engine:
    if shutil.which("podman") is None:
        message = "podman is not installed (scripts/podman.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; in CI the container tests must run")
        pytest.skip(message)
    return find_engine("podman")


BUILT: list[str] = []  # image ids this session built; untagged at its end


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """podman; at the end of the session the images built are untagged (their layers stay
    in the cache for the next run), so repeated runs do not pile up tags."""
    found = need_podman()
    yield found
    for image_id in BUILT:
        podman("untag", image_id, timeout=60)


@pytest.fixture(scope="session")
def base_image(engine: Engine) -> str:
    """The offline Debian base, made once (about 45 s) and reused by its tag."""
    return build_base(engine).tag


@pytest.fixture(scope="session")
def ct_project(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> ProjectConfig:
    """A project from the template whose pipeline ran: penguins/1 is the champion."""
    folder = create_project(tmp_path_factory.mktemp("ct") / PROJECT, PROJECT)
    toml = folder / "shipml.toml"
    toml.write_text(toml.read_text() + f'\n[containers]\nbase_image = "{base_image}"\n')
    config = load_config(folder)
    result = run_pipeline(config, params={"n_estimators": 20})
    assert result.model_version is not None
    # champion moves only through the promotion function: here a recorded override
    promote(config, result.model_version.ref, force=True, reason="the container tests' model")
    return config


def _build(config: ProjectConfig, engine: Engine, kind: str, ref: str | None = None) -> BuiltImage:
    lines: list[str] = []
    image = build_image(config, kind, ref, engine=engine, log=lines.append)
    BUILT.append(image.id)
    image.labels["_build_output"] = "\n".join(lines)  # for the cache test
    return image


@pytest.fixture(scope="session")
def serve_image(ct_project: ProjectConfig, engine: Engine) -> BuiltImage:
    return _build(ct_project, engine, "serve")


@pytest.fixture(scope="session")
def data_image(ct_project: ProjectConfig, engine: Engine) -> BuiltImage:
    return _build(ct_project, engine, "data", "penguins")


@pytest.fixture(scope="session")
def train_image(ct_project: ProjectConfig, engine: Engine) -> BuiltImage:
    return _build(ct_project, engine, "train")


@pytest.fixture(scope="session")
def test_image(ct_project: ProjectConfig, engine: Engine, train_image: BuiltImage) -> BuiltImage:
    return _build(ct_project, engine, "test")  # after train: shares its dependency layers


@pytest.fixture(scope="session")
def notebook_image(
    ct_project: ProjectConfig, engine: Engine, train_image: BuiltImage
) -> BuiltImage:
    return _build(ct_project, engine, "notebook")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_http(url: str, timeout: float = 90.0) -> int:
    """Poll ``url`` until it answers; returns the status."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError as exc:
            last = exc
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout}s: {last}")


@pytest.fixture
def container(engine: Engine) -> Iterator[list[str]]:
    """Names of detached containers to stop (and remove) after the test."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "2", name, timeout=60)


def start(image: str, names: list[str], *args: str, options: tuple[str, ...] = ()) -> str:
    """Start ``image`` detached with a unique name; returns the name."""
    name = f"shipml-test-{os.getpid()}-{len(names)}-{int(time.time() * 1000) % 100000}"
    done = podman("run", "--detach", "--name", name, *options, image, *args)
    assert done.returncode == 0, done.stderr
    names.append(name)
    return name


def logs(name: str) -> str:
    done = podman("logs", name)
    return done.stdout + done.stderr
