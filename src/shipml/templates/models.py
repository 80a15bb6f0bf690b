"""The estimators ``shipml init --model`` can put at the end of the template's pipeline.

One place for the choice: each entry fills the placeholders of ``features.py`` (imports,
the classifier and the regressor built from ``n_estimators`` and ``seed``, and the
parameters the search tries). Every one of them is packaged as ONNX
(docs/models.md); the boosted ones need their extra (``shipml[lightgbm]``...).
"""

from __future__ import annotations

from dataclasses import dataclass

from shipml.errors import ProjectError


@dataclass(frozen=True)
class EstimatorChoice:
    name: str
    imports: str
    classifier: str
    regressor: str
    search: str  # a Python dict literal: estimator parameter -> values to try
    framework: str | None = None  # the boosting framework (its extra), if any

    def values(self) -> dict[str, str]:
        """The placeholders of features.py."""
        return {
            "model": self.name,
            "model_imports": self.imports,
            "classifier": self.classifier,  # written at 4 spaces in features.py
            "regressor": self.regressor.replace("\n", "\n    "),  # at 8
            "search": self.search,
        }


_ARGS = "n_estimators=n_estimators, random_state=seed, n_jobs=1"
# Small data (a few hundred rows): smaller leaves and half the features per tree, so that
# every feature earns its place (the template's model.feature_importance check); CatBoost
# learns faster than its default, which leaves a feature (sex) almost unused here.
_LIGHTGBM = (
    f"\n        {_ARGS},\n        min_child_samples=10, colsample_bytree=0.5, verbose=-1,\n    "
)
_CATBOOST = (
    "\n        iterations=n_estimators, random_seed=seed, thread_count=1, learning_rate=0.2,"
    "\n        verbose=0, allow_writing_files=False,\n    "
)
CHOICES = {
    c.name: c
    for c in (
        EstimatorChoice(
            "sklearn",
            "from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor",
            f"RandomForestClassifier({_ARGS})",
            f"RandomForestRegressor({_ARGS})",
            '{"max_depth": [3, 6, None]}',
        ),
        EstimatorChoice(
            "lightgbm",
            "from lightgbm import LGBMClassifier, LGBMRegressor",
            f"LGBMClassifier({_LIGHTGBM})",
            f"LGBMRegressor({_LIGHTGBM})",
            '{"num_leaves": [7, 15, 31]}',
            "lightgbm",
        ),
        EstimatorChoice(
            "xgboost",
            "from xgboost import XGBClassifier, XGBRegressor\n\n"
            "# XGBoost learns from labels 0..k-1: the wrapper takes any labels (species names)\n"
            "from shipml.model.labels import LabelEncodedClassifier",
            f"LabelEncodedClassifier(\n        XGBClassifier({_ARGS})\n    )",
            f"XGBRegressor({_ARGS})",
            '{"max_depth": [3, 6]}',
            "xgboost",
        ),
        EstimatorChoice(
            "catboost",
            "from catboost import CatBoostClassifier, CatBoostRegressor",
            f"CatBoostClassifier({_CATBOOST})",
            f"CatBoostRegressor({_CATBOOST})",
            '{"depth": [4, 6]}',
            "catboost",
        ),
    )
}
DEFAULT = "sklearn"


def estimator_choice(name: str) -> EstimatorChoice:
    """The choice named ``name``; its framework's extra must be installed."""
    choice = CHOICES.get(name)
    if choice is None:
        raise ProjectError(
            f"unknown model {name!r}",
            hint=f"choose one of: {', '.join(CHOICES)} (default {DEFAULT})",
        )
    if choice.framework is not None:
        from shipml.model.converters import require

        require(choice.framework)  # ModelError naming the extra
    return choice
