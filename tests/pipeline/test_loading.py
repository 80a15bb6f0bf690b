"""Importing the project's pipeline file: a mistake in it is named with its file and line."""

import os
import sys
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


def _same_size_edit(path: Path, old: str, new: str) -> None:
    """Change ``old`` to ``new`` (as long) and keep the file's modification time: an edit
    saved within the second of the last import, as a script or a quick hand makes it."""
    assert len(old) == len(new)
    stat = path.stat()
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_edit_within_the_second_keeping_the_size_takes_effect(
    config: ProjectConfig, project: Path, monkeypatch: pytest.MonkeyPatch
):
    """A .pyc is matched to its source by mtime in whole seconds and size: such an edit
    once loaded the old code (the pipeline file, a helper module and a package's module),
    and the step cache, keyed by that code, handed back the old results."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as most machines run Python
    (project / "helper_mod.py").write_text("LIMIT = 1\n")
    (project / "pkg").mkdir()
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "deep.py").write_text("DEPTH = 1\n")
    pipeline_py = project / "pipeline.py"
    pipeline_py.write_text(
        pipeline_py.read_text() + "\nimport helper_mod, pkg.deep\nSEEN = 'old'\n"
        "def seen():\n    return SEEN, helper_mod.LIMIT, pkg.deep.DEPTH\n"
    )
    for _ in range(2):  # the second load would be the first to find a .pyc
        load_pipeline(config)
        assert sys.modules["pipeline"].seen() == ("old", 1, 1)
    _same_size_edit(pipeline_py, "SEEN = 'old'", "SEEN = 'new'")
    _same_size_edit(project / "helper_mod.py", "LIMIT = 1", "LIMIT = 2")
    _same_size_edit(project / "pkg" / "deep.py", "DEPTH = 1", "DEPTH = 2")
    load_pipeline(config)
    assert sys.modules["pipeline"].seen() == ("new", 2, 2)


def test_a_virtual_environment_inside_the_project_keeps_its_bytecode(
    config: ProjectConfig, project: Path
):
    """Only the project's own folders are read from source: the packages of a .venv kept
    in the project folder (as many keep it) load from their .pyc files as usual."""
    from shipml.pipeline.loading import _project_finder

    site = project / ".venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    load_pipeline(config)
    assert _project_finder(str(project)) is not None
    with pytest.raises(ImportError):
        _project_finder(str(site))
    with pytest.raises(ImportError):
        _project_finder(str(project.parent))  # not in the project
