"""Feature preprocessing and the model, shared by the pipeline and the notebook."""

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
$imports

# The estimator `shipml init --model` chose (sklearn, lightgbm, xgboost or catboost).
# Its hyperparameters are the pipeline's parameters: `shipml tune` searches them in the
# ranges of shipml.toml [tune.space]. Another model: change it here, its parameters in
# pipeline.py, and the space.
MODEL = "$model"


def build_model(
    X: pd.DataFrame,
$hp_params
    seed: int = 42,
) -> Pipeline:
    """Imputation and one-hot encoding, then the model.

    X follows shipml.model_input: strings with "" for missing, float32 numbers."""
    categorical = [c for c in X.columns if X[c].dtype == object]
    numeric = [c for c in X.columns if c not in categorical]
    encode = make_pipeline(
        SimpleImputer(missing_values="", strategy="constant", fill_value="unknown"),
        OneHotEncoder(handle_unknown="ignore"),
    )
    parts = [("categorical", encode, categorical)] if categorical else []
    parts += [("numeric", SimpleImputer(strategy="median"), numeric)] if numeric else []
    # (an empty column list would keep the model from converting to ONNX)
    features = ColumnTransformer(parts, sparse_threshold=0)
    model = $constructor
    return Pipeline([("features", features), ("model", model)])
