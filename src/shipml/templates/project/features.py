"""Feature preprocessing and the model search, shared by the pipeline and the notebook."""

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder


def build_model(X: pd.DataFrame, n_estimators: int = 200, seed: int = 42) -> Pipeline:
    """Imputation and one-hot encoding, then a random forest.

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
    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1)
    return Pipeline([("features", features), ("model", forest)])


def build_search(X: pd.DataFrame, n_estimators: int = 200, seed: int = 42) -> GridSearchCV:
    return GridSearchCV(
        build_model(X, n_estimators=n_estimators, seed=seed),
        {"model__max_depth": [3, 6, None]},
        cv=5,
        n_jobs=1,
    )
