"""`shipml init` makes a runnable project whose own tests and notebook pass."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from shipml.config import load_config
from shipml.errors import ProjectError
from shipml.templates import create_project


def test_init_writes_a_complete_project(project: Path):
    for name in (
        "shipml.toml",
        "pipeline.py",
        "features.py",
        "README.md",
        ".gitignore",
        "data/penguins.csv",
        "tests/test_pipeline.py",
        "notebooks/explore.ipynb",
    ):
        assert (project / name).is_file(), name
    config = load_config(project)
    assert config.project.name == "penguins" and config.model.target == "species"
    assert config.datasets["penguins"].source == "data/penguins.csv"
    git = subprocess.run(["git", "log", "--oneline"], cwd=project, capture_output=True, text=True)
    assert "New shipml project" in git.stdout


def test_template_data_is_real_tabular_data(project: Path):
    df = pd.read_csv(project / "data" / "penguins.csv")
    strings = [
        c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])
    ]
    assert {"species", "island", "sex"} <= set(strings)
    assert df["sex"].isna().sum() > 0 and df["bill_length_mm"].isna().sum() > 0
    assert len(df) == 344


def test_the_projects_own_tests_pass(project: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the unit tests run; the data, model, api and browser tests need a trained model
    assert "6 passed" in result.stdout and "skipped" in result.stdout


def test_the_example_notebook_runs_headless(project: Path):
    nb = nbformat.read(project / "notebooks" / "explore.ipynb", as_version=4)
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(project / "notebooks")}},
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("accuracy" in str(o.get("data", {})) for o in outputs)


def test_invalid_names_and_existing_files(tmp_path: Path):
    with pytest.raises(ProjectError, match="invalid project name"):
        create_project(tmp_path / "x", "1-bad name")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="is a file"):
        create_project(tmp_path / "file", "ok")
