"""The project templates behind ``shipml init``: the penguins example (``project/``), and
a project made for the user's own table (``table.py``, ``table/``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from shipml.errors import ProjectError
from shipml.templates.estimators import DEFAULT, estimator, write_estimator_settings

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
RENAMES = {"gitignore": ".gitignore"}


def _notebook(name: str) -> str:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = [
        new_markdown_cell(
            f"# Exploring {name}\n\nA first look at the data and a quick model. The same "
            "steps run in `pipeline.py`; everything here is plain pandas and scikit-learn."
        ),
        new_code_cell(
            "import sys, pathlib\n"
            "root = pathlib.Path.cwd()\n"
            "root = root.parent if root.name == 'notebooks' else root\n"
            "sys.path.insert(0, str(root))\n"
            "import pandas as pd\n"
            "from shipml import model_input\n"
            "df = pd.read_csv(root / 'data' / 'penguins.csv')\n"
            "df.head()"
        ),
        new_code_cell("df.describe(include='all')"),
        new_code_cell("df.isna().sum()"),
        new_code_cell(
            "import pipeline\n"
            "labelled = df.dropna(subset=[pipeline.TARGET])\n"
            "train, valid = pipeline.split(labelled, test_size=0.25, seed=42)\n"
            "model = pipeline.train(train, n_estimators=50, seed=42)\n"
            "metrics = pipeline.evaluate(model, valid)\n"
            "metrics"
        ),
        new_code_cell("assert metrics['accuracy'] > 0.8, metrics"),
    ]
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    return str(nbformat.writes(nb))


def write_data(folder: Path) -> Path:
    """The Palmer Penguins data, from the palmerpenguins package (no download)."""
    from palmerpenguins import load_penguins

    path = folder / "data" / "penguins.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    load_penguins().to_csv(path, index=False)
    return path


def check_new_folder(folder: Path, name: str) -> Path:
    """``folder`` (expanded) if a project named ``name`` may be created there: a valid
    name, and a folder that is missing or empty."""
    folder = folder.expanduser()
    if not NAME_RE.match(name):
        raise ProjectError(
            f"invalid project name {name[:80]!r}",
            hint="start with a letter; use letters, digits, '_' or '-' (at most 64)",
        )
    if folder.exists():
        if not folder.is_dir():
            raise ProjectError(f"{folder} exists and is a file", hint="choose another name")
        entries = sorted(p.name for p in folder.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
            raise ProjectError(
                f"{folder} is not empty ({len(entries)} entries: {shown})",
                hint="shipml init never overwrites files: give a new or empty folder",
            )
    return folder


def create_project(
    folder: Path, name: str | None = None, *, git: bool = True, model: str = DEFAULT
) -> Path:
    """Create a runnable project in ``folder`` (which must be missing or empty), with
    ``model`` (sklearn, lightgbm, xgboost or catboost; ``templates/estimators.py``) at the
    end of its pipeline and its ``[tune.space]`` in ``shipml.toml``."""
    name = name or folder.expanduser().name
    chosen = estimator(model)
    folder = check_new_folder(folder, name)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        template = resources.files("shipml.templates") / "project"
        _copy(template, folder, {"name": name, **chosen.values("classification")})
        write_estimator_settings(folder / "shipml.toml", chosen, "classification")
        write_data(folder)
        nb = folder / "notebooks" / "explore.ipynb"
        nb.parent.mkdir(exist_ok=True)
        nb.write_text(_notebook(name), encoding="utf-8")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if git:
        _git_init(folder)
    return folder


def _copy(src: Traversable, dst: Path, values: dict[str, str]) -> None:
    for item in src.iterdir():
        if item.name in ("__pycache__",) or item.name.endswith(".pyc"):
            continue
        target = dst / RENAMES.get(item.name, item.name)
        if item.is_dir():
            target.mkdir(exist_ok=True)
            _copy(item, target, values)
        else:
            text = item.read_text(encoding="utf-8")
            target.write_text(Template(text).safe_substitute(values), encoding="utf-8")


def _git_init(folder: Path) -> None:
    """A git repository with a first commit, so runs record the code version."""
    if shutil.which("git") is None:
        return
    ident = [
        "-c",
        "user.name=shipml",
        "-c",
        "user.email=shipml@localhost",
        "-c",
        "commit.gpgsign=false",
    ]
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        [*ident, "commit", "-q", "-m", "New shipml project"],
    ):
        subprocess.run(["git", *args], cwd=folder, capture_output=True, check=False, timeout=60)
