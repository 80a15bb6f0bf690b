"""`shipml init --data`: projects made for tables shipped by Python packages pass `shipml
run`, `shipml test` (every suite) and `shipml promote` without an edit.

The tables: vega_datasets' cars (regression of Miles_per_Gallon: string categories,
missing values, rows without a target, an identifier column), its Seattle weather
(five unbalanced string classes, a date column) and scikit-learn's diabetes
(regression, numeric)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from shipml.config import load_config
from shipml.errors import ProjectError
from shipml.templates.table import create_table_project
from shipml.templates.table_description import describe
from tests.conftest import shipml_here


def _tables(folder: Path) -> dict[str, tuple[Path, str]]:
    from sklearn.datasets import load_diabetes
    from vega_datasets import local_data

    files = {
        "cars": (local_data.cars(), "Miles_per_Gallon"),
        "weather": (local_data.seattle_weather(), "weather"),
        "diabetes": (load_diabetes(as_frame=True).frame, "target"),
    }
    out = {}
    for name, (frame, target) in files.items():
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        out[name] = (path, target)
    return out


@pytest.fixture(scope="session")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return _tables(tmp_path_factory.mktemp("tables"))


@pytest.mark.parametrize("name", ["cars", "weather", "diabetes"])
def test_a_project_made_for_a_table_runs_tests_and_promotes(
    tables: dict[str, tuple[Path, str]], tmp_path: Path, name: str
) -> None:
    data, target = tables[name]
    made = shipml_here("init", name, "--data", str(data), "--target", target, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    task = "classification" if name == "weather" else "regression"
    assert f"task: {task}" in made.stdout
    root = tmp_path / name
    run = shipml_here("run", "--alias", "challenger", cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    tested = shipml_here("test", f"{name}@challenger", cwd=root)
    assert tested.returncode == 0, tested.stdout[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert set(results["suites"]) == {"unit", "data", "model", "api", "browser"}
    promoted = shipml_here("promote", f"{name}@challenger", cwd=root)
    assert promoted.returncode == 0, promoted.stdout[-2000:]
    assert f"promoted: {name}@champion → version 1" in promoted.stdout
    config = load_config(root)
    assert config.model.target == target
    if name == "cars":
        assert "'Name': an identifier or free text" in made.stdout.replace("\n", "")
        assert set(config.tests.data.ranges) >= {"Horsepower", "Weight_in_lbs"}
        assert "model.rmse" in config.gates.max


def test_hostile_tables_and_column_names(tmp_path: Path) -> None:
    rows = 60
    frame = pd.DataFrame(
        {
            "quote\"\n'name": [float(i % 7) for i in range(rows)],
            "$name ${x}": ["a", "b", "c"] * (rows // 3),
            "y": ["yes", "no"] * (rows // 2),
        }
    )
    path = tmp_path / "odd.csv"
    frame.to_csv(path, index=False)
    made = create_table_project(tmp_path / "odd", "odd", path, "y", git=False)
    assert made.task == "classification"
    source = (made.folder / "pipeline.py").read_text()
    compile(source, "pipeline.py", "exec")  # names are literals, never code
    compile((made.folder / "tests" / "test_api.py").read_text(), "test_api.py", "exec")
    config = load_config(made.folder)
    assert "quote\"\n'name" in config.tests.data.ranges
    with pytest.raises(ProjectError, match="no column 'nope'"):
        describe(frame, "nope", None)
    with pytest.raises(ProjectError, match="not numeric"):
        describe(frame, "y", "regression")
    with pytest.raises(ProjectError, match="unknown task"):
        describe(frame, "y", "clustering")
    few = frame.head(10)
    with pytest.raises(ProjectError, match="at least 30 rows"):
        describe(few, "y", None)
    with pytest.raises(ProjectError, match="has 1 rows"):
        describe(frame.assign(y=["a"] + ["b"] * (rows - 1)), "y", None)
    (tmp_path / "notes.txt").write_text("x")
    bad = shipml_here(
        "init", "n", "--data", str(tmp_path / "notes.txt"), "--target", "y", cwd=tmp_path
    )
    assert bad.returncode == 4 and "cannot tell the format" in bad.stderr
    bad = shipml_here("init", "n2", "--target", "y", cwd=tmp_path)
    assert bad.returncode == 4 and "--target and --task need --data" in bad.stderr


def test_a_true_false_target_is_learnt_as_text(tmp_path: Path) -> None:
    """ONNX has no boolean labels: the generated ingest makes a True/False target the
    text "True"/"False", which the server answers as it reads (not 1 or 0), and the
    generated API test compares the answer as text (an integer target's are numbers)."""
    rows = 60
    frame = pd.DataFrame({"x": [i / rows for i in range(rows)], "churn": [True, False] * 30})
    path = tmp_path / "b.csv"
    frame.to_csv(path, index=False)
    made = create_table_project(tmp_path / "b", "b", path, "churn", git=False)
    source = (made.folder / "pipeline.py").read_text()
    namespace: dict[str, object] = {}
    exec(compile(source, "pipeline.py", "exec"), namespace)
    ingest = namespace["ingest"]

    class Raw:
        def to_pandas(self) -> pd.DataFrame:
            return pd.read_csv(path)

    df = ingest(Raw())  # a step called outside a pipeline is the plain function
    assert sorted(df["churn"].unique()) == ["False", "True"]
    api = (made.folder / "tests" / "test_api.py").read_text()
    assert f'assert str(answer["label"]) in {made.classes!r}' in api
    assert sorted(made.classes) == ["False", "True"]
