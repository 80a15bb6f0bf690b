"""Feature preprocessing and the model search, shared by the pipeline and the notebook."""

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
$model_imports

# The estimator `shipml init --model` chose (sklearn, lightgbm, xgboost or catboost):
# change it here, in build_estimator, and in SEARCH.
MODEL = "$model"
# The estimator's parameters the search tries.
SEARCH = $search


def build_estimator(task: str = "classification", n_estimators: int = 200, seed: int = 42):
    """The model at the end of the pipeline: a classifier, or a regressor."""
    if task == "regression":
        return $regressor
    return $classifier


def build_model(
    X: pd.DataFrame, n_estimators: int = 200, seed: int = 42, task: str = "classification"
) -> Pipeline:
    """Imputation and one-hot encoding, then the estimator.

    X follows shipml.model_input: strings with "" for missing, float32 numbers."""
    categorical = [c for c in X.columns if X[c].dtype == object]
    numeric = [c for c in X.columns if c not in categorical]
    features = ColumnTransformer(
        [
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(missing_values="", strategy="constant", fill_value="unknown"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
            ("numeric", SimpleImputer(strategy="median"), numeric),
        ],
        sparse_threshold=0,
    )
    model = build_estimator(task, n_estimators=n_estimators, seed=seed)
    return Pipeline([("features", features), ("model", model)])


def build_search(
    X: pd.DataFrame, n_estimators: int = 200, seed: int = 42, task: str = "classification"
) -> GridSearchCV:
    model = build_model(X, n_estimators=n_estimators, seed=seed, task=task)
    # a wrapped estimator (LabelEncodedClassifier) takes its parameters as estimator__...
    wrapped = "estimator" in model.named_steps["model"].get_params(deep=False)
    prefix = "model__estimator__" if wrapped else "model__"
    return GridSearchCV(
        model, {prefix + name: values for name, values in SEARCH.items()}, cv=5, n_jobs=1
    )
