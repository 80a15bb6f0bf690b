"""The model a generated project trains: the one place an estimator is chosen.

``shipml init --model sklearn|lightgbm|xgboost|catboost`` (the penguins example, or a
project made ``--data`` for the user's table) reads its entry here: the imports and
constructors written into ``features.py`` (a classifier and a regressor), the
hyperparameters (the pipeline's parameters, with their defaults: ``shipml tune``
searches them) and their ``[tune.space]``, written as data into ``shipml.toml``. Every
one of them is packaged as ONNX (docs/models.md); a boosted one needs its extra
(``shipml[lightgbm]``...). Another model is one more entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.errors import ProjectError

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Estimator:
    name: str
    # task -> (imports, constructor): Python using the hyperparameters' names and `seed`
    code: dict[str, tuple[str, str]]
    hyperparameters: dict[str, int | float]  # name -> default
    space: dict[str, dict[str, Any]]  # name -> [tune.space] entry (the default inside)
    framework: str | None = None  # the boosting framework (its extra), if any
    # task -> the types skops does not trust by default that the fitted model holds: the
    # step cache loads the trained model back only if they are in [model] trusted_types
    model_types: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def trusted_types(self, task: str) -> list[str]:
        """``[model] trusted_types`` for ``task``: what the cached model needs (the
        template's preprocessing adds ``numpy.dtype``)."""
        return sorted({"numpy.dtype", *self.model_types.get(task, ())})

    def values(self, task: str) -> dict[str, str]:
        """The placeholders of ``features.py`` and ``pipeline.py`` for ``task``."""
        imports, constructor = self.code[task]
        return {
            "model": self.name,
            "imports": imports,
            "constructor": constructor,
            # one parameter a line, in a `def` (4 spaces) and in a call (8 spaces)
            "hp_params": "\n".join(
                f"    {k}: {type(v).__name__} = {v!r}," for k, v in self.hyperparameters.items()
            ),
            "hp_pass": "\n".join(f"        {k}={k}," for k in self.hyperparameters),
        }

    def tune_space(self) -> Any:
        """``[tune.space]`` as a TOML table (one inline table per hyperparameter)."""
        import tomlkit

        table = tomlkit.table()
        for key, spec in self.space.items():
            entry = tomlkit.inline_table()
            entry.update(spec)
            table[key] = entry
        table.add(tomlkit.nl())
        return table


def _int(low: int, high: int, log: bool = False) -> dict[str, Any]:
    return {"type": "int", "low": low, "high": high, **({"log": True} if log else {})}


def _float(low: float, high: float, log: bool = False) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, **({"log": True} if log else {})}


_TREES = _int(20, 400, log=True)  # n_estimators of every kind
_ARGS = "random_state=seed,\n        n_jobs=1"
_FOREST = (
    "(\n        n_estimators=n_estimators,\n        max_depth=max_depth,\n"
    "        min_samples_leaf=min_samples_leaf,\n        max_features=max_features,\n"
    f"        {_ARGS},\n    )"
)
_LIGHTGBM = (
    "(\n        n_estimators=n_estimators,\n        learning_rate=learning_rate,\n"
    "        num_leaves=num_leaves,\n        min_child_samples=min_child_samples,\n"
    f"        colsample_bytree=colsample_bytree,\n        {_ARGS},\n        verbose=-1,\n    )"
)
_XGBOOST = (
    "(\n        n_estimators=n_estimators,\n        learning_rate=learning_rate,\n"
    "        max_depth=max_depth,\n        min_child_weight=min_child_weight,\n"
    f"        colsample_bytree=colsample_bytree,\n        {_ARGS},\n    )"
)
_CATBOOST = (
    "(\n        iterations=n_estimators,\n        learning_rate=learning_rate,\n"
    "        depth=depth,\n        l2_leaf_reg=l2_leaf_reg,\n        random_seed=seed,\n"
    "        thread_count=1,\n        verbose=0,\n        allow_writing_files=False,\n    )"
)
_XGB_LABELS = (
    "from xgboost import XGBClassifier\n\n"
    "# XGBoost learns from labels 0..k-1: the wrapper takes any labels (names, say)\n"
    "from shipml.model.labels import LabelEncodedClassifier"
)
_XGB_CLASSIFIER = (
    "LabelEncodedClassifier(\n        XGBClassifier" + _XGBOOST.replace("\n", "\n    ") + "\n    )"
)

# What skops 0.16 reports as untrusted in each fitted model (checked by
# tests/templates/test_estimators.py where the framework is installed).
_TREE = "sklearn.tree._tree.Tree"
_ORDERED = "collections.OrderedDict"
_LGB_BOOSTER = "lightgbm.basic.Booster"
_XGB_BOOSTER = "xgboost.core.Booster"

ESTIMATORS: dict[str, Estimator] = {
    e.name: e
    for e in (
        Estimator(
            "sklearn",  # a random forest
            {
                "classification": (
                    "from sklearn.ensemble import RandomForestClassifier",
                    "RandomForestClassifier" + _FOREST,
                ),
                "regression": (
                    "from sklearn.ensemble import RandomForestRegressor",
                    "RandomForestRegressor" + _FOREST,
                ),
            },
            {"n_estimators": 200, "max_depth": 10, "min_samples_leaf": 1, "max_features": 0.5},
            {
                "n_estimators": _TREES,
                "max_depth": _int(2, 20),
                "min_samples_leaf": _int(1, 10),
                "max_features": _float(0.2, 1.0),
            },
            None,
            {"classification": (_TREE,), "regression": (_TREE,)},
        ),
        # Small data (a few hundred rows): smaller leaves and half the features per tree,
        # so that every feature earns its place (the template's feature-importance check).
        Estimator(
            "lightgbm",
            {
                "classification": (
                    "from lightgbm import LGBMClassifier",
                    "LGBMClassifier" + _LIGHTGBM,
                ),
                "regression": ("from lightgbm import LGBMRegressor", "LGBMRegressor" + _LIGHTGBM),
            },
            {
                "n_estimators": 200,
                "learning_rate": 0.1,
                "num_leaves": 31,
                "min_child_samples": 10,
                "colsample_bytree": 0.5,
            },
            {
                "n_estimators": _TREES,
                "learning_rate": _float(0.01, 0.3, log=True),
                "num_leaves": _int(4, 64, log=True),
                "min_child_samples": _int(3, 50, log=True),
                "colsample_bytree": _float(0.3, 1.0),
            },
            "lightgbm",
            {
                "classification": (_ORDERED, _LGB_BOOSTER, "lightgbm.sklearn.LGBMClassifier"),
                "regression": (_ORDERED, _LGB_BOOSTER, "lightgbm.sklearn.LGBMRegressor"),
            },
        ),
        Estimator(
            "xgboost",
            {
                "classification": (_XGB_LABELS, _XGB_CLASSIFIER),
                "regression": ("from xgboost import XGBRegressor", "XGBRegressor" + _XGBOOST),
            },
            {
                "n_estimators": 200,
                "learning_rate": 0.3,
                "max_depth": 6,
                "min_child_weight": 1.0,
                "colsample_bytree": 1.0,
            },
            {
                "n_estimators": _TREES,
                "learning_rate": _float(0.01, 0.5, log=True),
                "max_depth": _int(2, 10),
                "min_child_weight": _float(0.5, 10.0, log=True),
                "colsample_bytree": _float(0.3, 1.0),
            },
            "xgboost",
            {
                "classification": (
                    "shipml.model.labels.LabelEncodedClassifier",
                    _XGB_BOOSTER,
                    "xgboost.sklearn.XGBClassifier",
                ),
                "regression": (_XGB_BOOSTER, "xgboost.sklearn.XGBRegressor"),
            },
        ),
        # CatBoost: faster than its default rate (0.03 leaves a feature, sex, unused) and
        # shallower trees (at depth 6 longer flippers made a Gentoo likelier in only 72% of
        # the penguins, and body mass trailed a ridge regression by 42 g RMSE).
        Estimator(
            "catboost",
            {
                "classification": (
                    "from catboost import CatBoostClassifier",
                    "CatBoostClassifier" + _CATBOOST,
                ),
                "regression": (
                    "from catboost import CatBoostRegressor",
                    "CatBoostRegressor" + _CATBOOST,
                ),
            },
            {"n_estimators": 200, "learning_rate": 0.2, "depth": 4, "l2_leaf_reg": 3.0},
            {
                "n_estimators": _TREES,
                "learning_rate": _float(0.01, 0.3, log=True),
                "depth": _int(2, 10),
                "l2_leaf_reg": _float(1.0, 10.0, log=True),
            },
            "catboost",
            {
                "classification": ("catboost.core.CatBoostClassifier",),
                "regression": ("catboost.core.CatBoostRegressor",),
            },
        ),
    )
}
MODELS = list(ESTIMATORS)
DEFAULT = "sklearn"


def estimator(name: str) -> Estimator:
    """The estimator named ``name``; its framework's extra must be installed."""
    found = ESTIMATORS.get(name)
    if found is None:
        raise ProjectError(
            f"unknown model {name[:40]!r}",
            hint=f"choose one of: {', '.join(MODELS)} (default {DEFAULT})",
        )
    if found.framework is not None:
        from shipml.model.converters import require

        require(found.framework)  # ModelError naming the extra
    return found


def write_estimator_settings(path: Path, chosen: Estimator, task: str) -> None:
    """Put ``chosen``'s search space into the ``[tune]`` table of the ``shipml.toml`` at
    ``path``, and the types its fitted model holds into ``[model] trusted_types`` (a TOML
    writer edits it: comments and the rest stay as they are)."""
    import tomlkit

    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    tune = doc.get("tune")
    if tune is None:
        tune = doc["tune"] = tomlkit.table()
    tune["space"] = chosen.tune_space()
    model = doc.get("model")
    if model is None:
        model = doc["model"] = tomlkit.table()
    model["trusted_types"] = chosen.trusted_types(task)  # in place: its comment stays
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")


TRUSTED_COMMENT = (
    "Types the trained model holds beyond those skops trusts: the step cache reuses it only "
    "then (docs/pipelines.md)."
)
