"""The model a generated project trains: the one place an estimator is chosen.

Each entry gives what `shipml init --data` writes for it: the import and the
constructor in ``features.py``, its hyperparameters (the pipeline's parameters, with
their defaults) and their ``[tune.space]``. Another model is one more entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipml.errors import ProjectError


@dataclass(frozen=True)
class Estimator:
    name: str
    imports: str
    constructor: str  # Python code using the hyperparameters' names and `seed`
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    space: dict[str, dict[str, Any]] = field(default_factory=dict)


_FOREST_HP = {"n_estimators": 100, "max_depth": 12, "min_samples_leaf": 1, "max_features": 0.5}
_FOREST_SPACE: dict[str, dict[str, Any]] = {
    "n_estimators": {"type": "int", "low": 20, "high": 300, "log": True},
    "max_depth": {"type": "int", "low": 2, "high": 20},
    "min_samples_leaf": {"type": "int", "low": 1, "high": 10},
    "max_features": {"type": "float", "low": 0.2, "high": 1.0},
}
_FOREST_ARGS = (
    "n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=min_samples_leaf, "
    "max_features=max_features, random_state=seed, n_jobs=1"
)

ESTIMATORS: dict[tuple[str, str], Estimator] = {
    ("random_forest", "classification"): Estimator(
        "random_forest",
        "from sklearn.ensemble import RandomForestClassifier",
        f"RandomForestClassifier({_FOREST_ARGS})",
        _FOREST_HP,
        _FOREST_SPACE,
    ),
    ("random_forest", "regression"): Estimator(
        "random_forest",
        "from sklearn.ensemble import RandomForestRegressor",
        f"RandomForestRegressor({_FOREST_ARGS})",
        _FOREST_HP,
        _FOREST_SPACE,
    ),
}
MODELS = sorted({name for name, _ in ESTIMATORS})


def estimator(model: str, task: str) -> Estimator:
    try:
        return ESTIMATORS[(model, task)]
    except KeyError:
        raise ProjectError(
            f"no model {model!r} for {task}",
            hint=f"choose one of: {', '.join(MODELS)}",
        ) from None
