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

from shipml.errors import ProjectError
from shipml.templates.estimators import DEFAULT, Estimator, estimator
from shipml.templates.table_settings import TableProject, project_toml

TASKS = ("classification", "regression")
MAX_CLASSES = 100
FORMATS = (".csv", ".csv.gz", ".parquet", ".pq")


def read_table(path: Path) -> pd.DataFrame:
    from shipml.data.source import parse_source, read_source

    if not path.is_file():
        raise ProjectError(f"no data file at {path}", hint="give the path of a CSV or Parquet file")
    if not str(path).lower().endswith(FORMATS):
        raise ProjectError(
            f"cannot tell the format of {path.name!r}",
            hint="give a file ending in .csv, .csv.gz, .parquet or .pq",
        )
    frame = parse_source(read_source(str(path.resolve())))
    if frame.empty or len(frame.columns) < 2:
        raise ProjectError(
            f"{path.name} has {len(frame)} rows and {len(frame.columns)} columns",
            hint="a project needs a table with a target column and at least one feature",
        )
    return frame


def infer_task(y: pd.Series, task: str | None) -> tuple[str, str]:
    """The task and why, in words the user reads."""
    values = y.dropna()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    distinct = int(values.nunique())
    if task is not None:
        if task not in TASKS:
            raise ProjectError(f"unknown task {task!r}", hint="use classification or regression")
        if task == "regression" and not numeric:
            raise ProjectError(
                f"the target {y.name!r} is not numeric (e.g. {str(values.iloc[0])[:30]!r}): "
                "it cannot be regressed",
                hint="use --task classification, or choose a numeric target",
            )
        return task, "as asked (--task)"
    if numeric and (distinct > 20 or not all(float(v).is_integer() for v in values.unique())):
        return "regression", f"the target is numeric with {distinct} distinct values"
    return "classification", f"the target has {distinct} distinct values"


# Dates as a CSV holds them: 2024-01-31, 2024/01/31, 31.01.2024, 01/31/2024, with an
# optional time of day and zone.
_DATE = re.compile(
    r"(\d{4}[-/]\d{1,2}[-/]\d{1,2}|\d{1,2}[./]\d{1,2}[./]\d{4})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"
)


def _dates(values: pd.Series) -> bool:
    """Text that is a date in every row: a category per day would be a feature no
    future row shares."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return False
    return all(isinstance(v, str) and _DATE.fullmatch(v.strip()) for v in values.unique())


def _running_number(values: pd.Series) -> bool:
    """Integers, one per row, that count the rows (0..n-1, 1..n, 1001..): a row id."""
    if not pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    low, high = int(values.min()), int(values.max())
    return len(values) >= 30 and high - low + 1 == len(values) == values.nunique()


def describe(df: pd.DataFrame, target: str, task: str | None) -> dict[str, Any]:
    if target not in df.columns:
        shown = ", ".join(repr(str(c)) for c in list(df.columns)[:20])
        raise ProjectError(
            f"no column {target[:60]!r} in the data",
            hint=f"--target takes one of its columns: {shown}",
        )
    y = df[target]
    if y.notna().sum() < 30:
        raise ProjectError(
            f"the target {target!r} has {int(y.notna().sum())} values",
            hint="a model needs at least 30 rows with a target",
        )
    task, reason = infer_task(y, task)
    info: dict[str, Any] = {"task": task, "reason": reason, "numeric": [], "categorical": []}
    info["dropped"] = dropped = {}
    rows = len(df)
    for col in df.columns:
        if col == target:
            continue
        values = df[col].dropna()
        distinct = int(values.nunique())
        if values.empty:
            dropped[col] = "always missing"
        elif distinct < 2:
            dropped[col] = "constant"
        elif pd.api.types.is_datetime64_any_dtype(values) or _dates(values):
            dropped[col] = "a date (derive features from it in ingest)"
        elif _running_number(values):
            dropped[col] = (
                f"an identifier (every row's own number, {values.min()} to {values.max()})"
            )
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            info["numeric"].append(col)
        elif distinct > 50 and distinct > 0.5 * rows:
            dropped[col] = f"an identifier or free text ({distinct} distinct values)"
        else:
            info["categorical"].append(col)
    if not info["numeric"] and not info["categorical"]:
        raise ProjectError(
            "no column is left as a feature "
            f"({'; '.join(f'{c}: {w}' for c, w in dropped.items())[:300]})",
            hint="give a table with features beside the target",
        )
    if task == "classification":
        counts = y.dropna().astype(str).value_counts()
        if len(counts) > MAX_CLASSES:
            raise ProjectError(
                f"the target {target!r} has {len(counts)} classes",
                hint="use --task regression for a numeric target, or choose another column",
            )
        if counts.min() < 10:
            raise ProjectError(
                f"class {str(counts.idxmin())[:40]!r} of {target!r} has {counts.min()} rows",
                hint="cross-validation needs at least 10 rows of every class: merge or drop "
                "the rare classes first",
            )
        info["classes"] = [str(c) for c in counts.index]
    return info


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
        "row": repr(_row(df, p)),
    }


def _classifier_code(p: TableProject) -> dict[str, str]:
    """The code of the generated project that is a classifier's."""
    return {
        "evaluate": "    values = {\n"
        '        "accuracy": metrics.accuracy_score(y, predicted),\n'
        '        "f1_macro": metrics.f1_score(y, predicted, average="macro"),\n'
        "    }\n    return log_metrics(values)",
        "beats_guess": "    accuracy = (np.ravel(model.predict(X)) == y).mean()\n"
        "    assert accuracy > y.value_counts(normalize=True).max()",
        "api_check": f'    assert answer["label"] in {p.classes!r}\n'
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
