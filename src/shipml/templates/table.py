"""`shipml init NAME --data FILE --target COLUMN`: a project for the user's own table.

The table is read once (as `shipml data add` reads it), the task inferred from the
target, the columns sorted into numeric and categorical features and the ones that are
not features (an identifier, a constant, a date), and every file written from that:
the data, the pipeline and its model (``--model``, from ``estimators.py``: the same
``features.py`` and search spaces as the penguins example), ``shipml.toml`` with ranges,
null fractions and classes read from the data, tests and gates that fit the task, and
a notebook. Column names go into code as Python literals (``repr``) and into
``shipml.toml`` through a TOML writer, so no name can break a file.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd

from shipml.templates.estimators import DEFAULT, Estimator, estimator
from shipml.templates.table_description import describe, read_table
from shipml.templates.table_settings import TableProject, project_toml


def _dataset_name(path: Path) -> str:
    stem = path.name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).strip("._-")[:60]
    return name if name and name[0].isalnum() else f"data_{name}"[:60] or "data"


def create_table_project(
    folder: Path,
    name: str,
    data: Path,
    target: str,
    *,
    task: str | None = None,
    model: str = DEFAULT,
    git: bool = True,
) -> TableProject:
    """Create a project in ``folder`` (missing or empty) for the table ``data``, with
    ``model`` (sklearn, lightgbm, xgboost or catboost) at the end of its pipeline."""
    from shipml.templates import _copy, _git_init, check_new_folder

    data = data.expanduser()
    df = read_table(data)
    info = describe(df, target, task)
    est = estimator(model)
    folder = check_new_folder(folder, name)
    dataset = _dataset_name(data)
    suffix = "".join(s for s in data.suffixes if s.lower() in (".csv", ".gz", ".parquet", ".pq"))
    project = TableProject(
        folder=folder,
        name=name,
        data_file=f"data/{dataset}{suffix or data.suffix}",
        dataset=dataset,
        target=target,
        task=info["task"],
        task_reason=info["reason"],
        rows=len(df),
        numeric=info["numeric"],
        categorical=info["categorical"],
        dropped=info["dropped"],
        classes=info.get("classes", []),
        boolean_target=pd.api.types.is_bool_dtype(df[target].dropna()),
    )
    folder.mkdir(parents=True, exist_ok=True)
    try:
        base = resources.files("shipml.templates")
        for item in ("conftest.py", "gitignore", "features.py"):
            _copy_one(base / "project" / item, folder, {"name": name, **est.values(project.task)})
        (folder / "data").mkdir()
        shutil.copyfile(data, folder / project.data_file)
        _copy(base / "table", folder, _values(project, df, est))
        (folder / "shipml.toml").write_text(project_toml(project, df, est), encoding="utf-8")
        (folder / "README.md").write_text(_readme(project), encoding="utf-8")
        nb = folder / "notebooks" / "explore.ipynb"
        nb.parent.mkdir(exist_ok=True)
        nb.write_text(_notebook(project), encoding="utf-8")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if git:
        _git_init(folder)
    return project


def _copy_one(item: Any, folder: Path, values: dict[str, str]) -> None:
    from shipml.templates import RENAMES

    text = item.read_text(encoding="utf-8")
    (folder / RENAMES.get(item.name, item.name)).write_text(
        Template(text).safe_substitute(values), encoding="utf-8"
    )


def _row(df: pd.DataFrame, p: TableProject) -> dict[str, Any]:
    """A typical row of the features (missing values as None), for the api and browser
    tests."""
    features = [*p.numeric, *p.categorical]
    complete = df.dropna(subset=[*features, p.target])
    row = (complete if len(complete) else df).iloc[0]
    out: dict[str, Any] = {}
    for col in features:
        v = row[col]
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            out[col] = None
        else:
            out[col] = v.item() if hasattr(v, "item") else str(v)
    return out


def _values(p: TableProject, df: pd.DataFrame, est: Estimator) -> dict[str, str]:
    classification = p.task == "classification"
    cv_metric = "cv_accuracy" if classification else "cv_r2"
    task_values = _classifier_code(p) if classification else _regressor_code(p, df)
    read = (
        f"pd.read_csv(Path(__file__).parents[1] / {p.data_file!r})"
        if ".csv" in p.data_file
        else f"pd.read_parquet(Path(__file__).parents[1] / {p.data_file!r})"
    )
    return {
        "name": p.name,
        "data_file": p.data_file,
        "target_text": p.target,
        "task": p.task,
        "task_repr": repr(p.task),
        "target": repr(p.target),
        "dataset": repr(p.dataset),
        "dropped": repr(list(p.dropped)),
        "dropped_reason": "; ".join(f"{c!r} is {w}" for c, w in p.dropped.items())
        or "none (every column is a feature)",
        "split_note": ", stratified by the target" if classification else "",
        "stratify": ", stratify=df[TARGET]" if classification else "",
        "folds": "StratifiedKFold" if classification else "KFold",
        "cv_metric": cv_metric,
        "cv_metric_repr": repr(cv_metric),
        **est.values(p.task),
        **task_values,
        "parity": '["max_probability_diff"] <= package.manifest["parity"]["tolerance"]',
        "read_data": read,
        "target_as_text": _TARGET_AS_TEXT if p.boolean_target else "",
        "row": repr(_row(df, p)),
    }


# ONNX has no boolean labels (skl2onnx makes classes False/True the numbers 0/1): a
# True/False target is learnt as the text "True"/"False", which is served as it reads.
_TARGET_AS_TEXT = """\
    # A True/False target as text: ONNX has no boolean labels, so the model answers
    # "True" or "False" rather than 1 or 0.
    df[TARGET] = df[TARGET].map({True: "True", False: "False"})
"""


def _classifier_code(p: TableProject) -> dict[str, str]:
    """The code of the generated project that is a classifier's."""
    return {
        "evaluate": "    values = {\n"
        '        "accuracy": metrics.accuracy_score(y, predicted),\n'
        '        "f1_macro": metrics.f1_score(y, predicted, average="macro"),\n'
        "    }\n    return log_metrics(values)",
        "beats_guess": "    accuracy = (np.ravel(model.predict(X)) == y).mean()\n"
        "    assert accuracy > y.value_counts(normalize=True).max()",
        # as text: an integer target's classes are served as numbers
        "api_check": f'    assert str(answer["label"]) in {p.classes!r}\n'
        '    assert abs(sum(answer["probabilities"].values()) - 1.0) < 1e-4',
        "model_tests": _CLASSIFIER_TESTS,
        "target_values": "    assert set(dataset[TARGET].dropna().astype(str)) <= "
        f"set({p.classes!r})",
    }


def _regressor_code(p: TableProject, df: pd.DataFrame) -> dict[str, str]:
    """The code of the generated project that is a regressor's: the target's range from
    the data."""
    y = df[p.target].dropna()
    low, high = float(y.min()), float(y.max())
    span = (high - low) or 1.0
    return {
        "evaluate": "    return log_metrics(\n        {\n"
        '            "mae": metrics.mean_absolute_error(y, predicted),\n'
        '            "rmse": metrics.root_mean_squared_error(y, predicted),\n'
        '            "r2": metrics.r2_score(y, predicted),\n'
        "        }\n    )",
        "beats_guess": "    rmse = ((np.ravel(model.predict(X)) - y) ** 2).mean() ** 0.5\n"
        "    assert rmse < y.std()  # better than always answering the mean",
        "api_check": '    value = answer["label"] if isinstance(answer, dict) else answer\n'
        "    assert math.isfinite(float(value))",
        "model_tests": _REGRESSOR_TESTS,
        "target_values": "    values = dataset[TARGET].dropna()\n"
        f"    assert values.between({low - span:g}, {high + span:g}).all()",
    }


_CLASSIFIER_TESTS = """def test_every_answer_is_a_known_class_with_probabilities(model, holdout):
    X, _ = holdout
    labels, probabilities = model.predict(X.head(50))
    assert set(labels) <= set(model.signature.classes)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
"""

_REGRESSOR_TESTS = '''def residuals(model, holdout):
    X, y = holdout
    predicted, _ = model.predict(X)
    return np.asarray(y, dtype=float) - np.asarray(predicted, dtype=float), np.asarray(
        predicted, dtype=float
    )


def test_residuals_are_centred(model, holdout):
    """No systematic over- or under-prediction: the mean residual is small next to
    their spread."""
    r, _ = residuals(model, holdout)
    assert abs(r.mean()) < 0.5 * r.std()


def test_residuals_do_not_grow_with_the_prediction(model, holdout):
    """Errors are not concentrated at one end of the range (heteroscedasticity)."""
    r, predicted = residuals(model, holdout)
    order = np.argsort(predicted)
    low, high = np.array_split(np.abs(r[order]), 2)
    assert high.mean() < 3 * max(low.mean(), 1e-9)
'''


def _readme(p: TableProject) -> str:
    dropped = "".join(f"\n- `{c}`: {w}" for c, w in p.dropped.items()) or "\n- none"
    return (
        f"# {p.name}\n\nA shipml project made from `{p.data_file}` ({p.rows} rows): predict "
        f"`{p.target}` ({p.task}; {p.task_reason}).\n\n"
        f"    shipml run --alias challenger   # run the pipeline, track it, register the model\n"
        f"    shipml tune --budget 10m        # search its hyperparameters\n"
        f"    shipml test {p.name}@challenger\n"
        f"    shipml promote {p.name}@challenger\n"
        f"    shipml report {p.name}@champion -o report.html\n\n"
        f"Features: {len(p.numeric)} numeric, {len(p.categorical)} categorical. "
        f"Columns left out:{dropped}\n"
    )


def _notebook(p: TableProject) -> str:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    reader = "read_csv" if ".csv" in p.data_file else "read_parquet"
    cells = [
        new_markdown_cell(
            f"# Exploring {p.name}\n\nA first look at `{p.data_file}` and a quick model; the "
            "same steps run in `pipeline.py`."
        ),
        new_code_cell(
            "import sys, pathlib\n"
            "root = pathlib.Path.cwd()\n"
            "root = root.parent if root.name == 'notebooks' else root\n"
            "sys.path.insert(0, str(root))\n"
            "import pandas as pd\n"
            f"df = pd.{reader}(root / {p.data_file!r})\n"
            "df.head()"
        ),
        new_code_cell("df.describe(include='all')"),
        new_code_cell("df.isna().mean().sort_values(ascending=False).head(10)"),
        new_code_cell(
            "import pipeline\n"
            "labelled = df.drop(columns=pipeline.DROPPED).dropna(subset=[pipeline.TARGET])\n"
            "train, valid = pipeline.split(labelled, test_size=0.25, seed=42)\n"
            "model = pipeline.train(train, n_estimators=50, seed=42)\n"
            "pipeline.evaluate(model, valid)"
        ),
    ]
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    return str(nbformat.writes(nb))


def summary(p: TableProject) -> dict[str, Any]:
    """What was read from the data, for the command's output."""
    return json.loads(
        json.dumps(
            {
                "task": p.task,
                "reason": p.task_reason,
                "numeric": p.numeric,
                "categorical": p.categorical,
                "dropped": p.dropped,
                "classes": p.classes,
            },
            default=str,
        )
    )
