"""Feature preprocessing and the model, shared by the pipeline and the notebook."""

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder


def build_model(
    X: pd.DataFrame,
    n_estimators: int = 200,
    max_depth: int = 10,
    min_samples_leaf: int = 1,
    max_features: float = 0.5,
    seed: int = 42,
) -> Pipeline:
    """Imputation and one-hot encoding, then a random forest (its hyperparameters are
    the pipeline's parameters: `shipml tune` searches them).

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
    forest = RandomForestClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        max_features=max_features,
        random_state=seed,
        n_jobs=1,
    )
    return Pipeline([("features", features), ("model", forest)])
