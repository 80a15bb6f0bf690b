"""Importing the project's pipeline file: a mistake in it is named with its file and line."""

from pathlib import Path

import pytest

from shipml.config import ProjectConfig
from shipml.errors import PipelineError
from shipml.pipeline import load_pipeline


def _break(project: Path, line: int, text: str) -> None:
    path = project / "pipeline.py"
    lines = path.read_text().splitlines()
    lines.insert(line - 1, text)
    path.write_text("\n".join(lines) + "\n")


def test_a_name_error_is_placed_at_its_line(config: ProjectConfig, project: Path):
    _break(project, 21, "undefined_name_here")
    with pytest.raises(PipelineError) as caught:
        load_pipeline(config)
    assert "NameError" in caught.value.message
    assert caught.value.message.endswith("(pipeline.py:21)")


def test_a_syntax_error_names_the_pipeline_file_not_the_import_machinery(
    config: ProjectConfig, project: Path
):
    _break(project, 21, "def broken(:")
    with pytest.raises(PipelineError) as caught:
        load_pipeline(config)
    message = caught.value.message
    assert "SyntaxError" in message and message.endswith("(pipeline.py:21)"), message
    assert "importlib" not in message
