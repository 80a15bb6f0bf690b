"""A project whose [deploy] settings pin model versions (no registry run needed), with the
Prometheus Operator and team mode on in staging and prod, and a helper that requires
real tools: skipped where missing, but a failure in CI (CI=true)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

DEPLOY_TOML = """
[deploy]
champion = "penguins/1"
challenger = "penguins/2"
object_store = "s3://models/mlflow"
object_store_endpoint = "http://minio:9000"

[deploy.staging]
prometheus_operator = true
team_mode = true

[deploy.prod]
prometheus_operator = true
team_mode = true
"""


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI needs {tool}, which is not installed")
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.fixture
def deploy_project(project: Path) -> Path:
    toml = project / "shipml.toml"
    toml.write_text(toml.read_text() + DEPLOY_TOML)
    return project
