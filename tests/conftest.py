"""Shared fixtures: real projects made by the template, real MLflow stores in tmp folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipml.config import ProjectConfig, load_config
from shipml.templates import create_project

SHIPML = [sys.executable, "-m", "shipml"]


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


def shipml(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `shipml` command in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    full_env.update(env or {})
    return subprocess.run(
        [*SHIPML, *args], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=600
    )
