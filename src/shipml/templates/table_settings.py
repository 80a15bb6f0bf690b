"""The ``shipml.toml`` of a project made for the user's own table (`shipml init --data`):
what the table is (``TableProject``), and the settings read from it, written through a
TOML writer: the dataset, the pipeline's parameters and search space, data checks with
ranges and null fractions, model checks and gates that fit the task."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shipml.templates.estimators import TRUSTED_COMMENT, Estimator


@dataclass
class TableProject:
    folder: Path
    name: str
    data_file: str  # relative to the folder
    dataset: str
    target: str
    task: str
    task_reason: str
    rows: int
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why
    classes: list[str] = field(default_factory=list)
    boolean_target: bool = False  # True/False: learnt as the text "True"/"False"


def project_toml(p: TableProject, df: pd.DataFrame, est: Estimator) -> str:
    import tomlkit

    classification = p.task == "classification"
    doc = tomlkit.document()
    doc.add(tomlkit.comment("shipml project settings, made by `shipml init --data` from the"))
    doc.add(tomlkit.comment(f"table {p.data_file} ({p.rows} rows). docs/config.md describes"))
    doc.add(tomlkit.comment("every setting; SHIPML_<SECTION>_<KEY> overrides one."))
    doc["project"] = {"name": p.name, "description": f"Predict {p.target} ({p.task})."}
    doc["tracking"] = {"uri": "sqlite:///.shipml/mlflow.db", "experiment": p.name}
    doc["artifacts"] = {"root": ".shipml/artifacts"}
    doc["datasets"] = {
        p.dataset: {"source": p.data_file, "description": f"{p.rows} rows, target {p.target}"}
    }
    doc["pipeline"] = {"file": "pipeline.py", "name": "training", "params": {"test_size": 0.25}}
    tune = tomlkit.table()
    tune.add(tomlkit.comment("`shipml tune`: cross-validated on the training rows; the held-out"))
    tune.add(tomlkit.comment("rows stay for the tests (docs/experiments.md)."))
    tune["metric"] = "cv_accuracy" if classification else "cv_r2"
    tune["direction"] = "maximize"
    tune["holdout_metric"] = "accuracy" if classification else "r2"
    tune["budget"] = "10m"
    tune["fixed"] = ["seed", "test_size"]
    tune["space"] = est.tune_space()
    doc["tune"] = tune
    model = tomlkit.table()
    model.update({"name": p.name, "target": p.target})
    model.add(tomlkit.comment(TRUSTED_COMMENT))
    model["trusted_types"] = est.trusted_types(p.task)
    doc["model"] = model
    doc["tests"] = {
        "suites": ["unit", "data", "model", "api", "browser"],
        "output": "results",
        "data": _data_tests(p, df),
        "model": _model_tests(p, df),
    }
    doc["gates"] = _gates(p, df)
    return tomlkit.dumps(doc)


def _data_tests(p: TableProject, df: pd.DataFrame) -> Any:
    import tomlkit

    table = tomlkit.table()
    table.add(tomlkit.comment("Read from the data: numeric ranges widened by 10% of their span,"))
    table.add(tomlkit.comment("the largest null fraction plus 5 points, the rarest class halved."))
    ranges = tomlkit.inline_table()
    for col in p.numeric:
        values = pd.to_numeric(df[col], errors="coerce").dropna()
        if values.empty or pd.api.types.is_bool_dtype(df[col]):
            continue
        low, high = float(values.min()), float(values.max())
        pad = 0.1 * (high - low) or 1.0
        ranges[str(col)] = [_round(low - pad), _round(high + pad)]
    table["ranges"] = ranges
    features = [*p.numeric, *p.categorical]
    nulls = float(df[features].isna().mean().max())
    table["max_null_fraction"] = round(min(1.0, nulls + 0.05), 3)
    duplicates = float(df.duplicated().mean())
    table["max_duplicate_fraction"] = round(min(1.0, duplicates + 0.01), 3) if duplicates else 0.0
    if p.task == "classification":
        rarest = float(df[p.target].dropna().astype(str).value_counts(normalize=True).min())
        table["min_class_fraction"] = math.floor(rarest / 2 * 1000) / 1000
    return table


def _model_tests(p: TableProject, df: pd.DataFrame) -> Any:
    import tomlkit

    table = tomlkit.table()
    y = df[p.target].dropna()
    if p.task == "classification":
        table.add(tomlkit.comment("Better than always answering the most frequent class."))
        majority = float(y.astype(str).value_counts(normalize=True).max())
        table["min"] = {"accuracy": round(majority, 4)}
        table["simpler_tolerance"] = 0.03
    else:
        table.add(tomlkit.comment("Better than always answering the mean (RMSE below the"))
        table.add(tomlkit.comment("target's standard deviation, MAE below its mean deviation)."))
        std = float(y.std())
        table["min"] = {"r2": 0.0}
        table["max"] = {"rmse": _round(std), "mae": _round(float((y - y.mean()).abs().mean()))}
        table["simpler_tolerance"] = _round(0.05 * std)
    table["latency_budget_ms"] = 10.0
    return table


def _gates(p: TableProject, df: pd.DataFrame) -> Any:
    import tomlkit

    table = tomlkit.table()
    table.add(tomlkit.comment("`shipml promote NAME@challenger`: champion only if all hold."))
    table["suites"] = ["data", "model"]
    if p.task == "classification":
        table["min"] = {"model.accuracy": "champion - 0.01"}
    else:
        slack = _round(0.02 * float(df[p.target].dropna().std()))
        table["max"] = {"model.rmse": f"champion + {slack}"}
    return table


def _round(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return 0.0
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    return round(value, digits)
