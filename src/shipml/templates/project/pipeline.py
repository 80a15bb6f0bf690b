"""The $name training pipeline: ingest → validate → split → train → evaluate → package.

Run it with `shipml run`. Every step is a plain function: call it directly in a
notebook or a test. Steps are cached: change a step (or a module it imports, like
features.py), a parameter or the data, and only what depends on it runs again.
"""

import pandas as pd

from shipml import (
    dataset,
    log_metrics,
    model_input,
    package_model,
    pipeline,
    report_intermediate,
    step,
)

TARGET = "species"
REQUIRED = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]


# Not features: the year a penguin was measured says nothing about its species (shuffling
# it does not change the model's loss; `shipml test` checks every feature earns its place).
DROPPED = ["year"]


@step
def ingest(raw=dataset("penguins")) -> pd.DataFrame:
    """Read the dataset snapshot, drop rows without a label and columns that are not
    features."""
    df = raw.to_pandas().drop(columns=DROPPED, errors="ignore")
    return df.dropna(subset=[TARGET]).reset_index(drop=True)


@step
def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Fail early on data the model cannot learn from."""
    missing = [c for c in [TARGET, *REQUIRED] if c not in df.columns]
    if missing:
        raise ValueError(f"the data lacks the columns {missing}")
    if len(df) < 50:
        raise ValueError(f"only {len(df)} labelled rows; at least 50 are needed")
    if df[TARGET].nunique() < 2:
        raise ValueError(f"the target {TARGET!r} has a single class")
    return df


@step(outputs=("train", "valid"))
def split(df: pd.DataFrame, test_size: float = 0.25, seed: int = 42):
    """Stratified split into training and validation rows."""
    from sklearn.model_selection import train_test_split

    train, valid = train_test_split(
        df, test_size=test_size, random_state=seed, stratify=df[TARGET]
    )
    return train, valid


@step
def train(
    train: pd.DataFrame,
$hp_params
    seed: int = 42,
):
    """Fit the model on the training rows. Five-fold cross-validation on those rows scores
    it first (cv_accuracy, the objective of `shipml tune`; each fold is reported, so the
    search can stop a poor trial early)."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from features import build_model

    X, y = model_input(train.drop(columns=[TARGET])), train[TARGET]
    model = build_model(
        X,
$hp_pass
        seed=seed,
    )
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(X, y)
    scores = []
    for fold, (fit_rows, score_rows) in enumerate(folds):
        fitted = clone(model).fit(X.iloc[fit_rows], y.iloc[fit_rows])
        scores.append(fitted.score(X.iloc[score_rows], y.iloc[score_rows]))
        report_intermediate(sum(scores) / len(scores), fold)
    log_metrics({"cv_accuracy": sum(scores) / len(scores)})
    return model.fit(X, y)


@step
def evaluate(model, valid: pd.DataFrame) -> dict:
    """Quality on the held-out rows."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    X = model_input(valid.drop(columns=[TARGET]))
    y = valid[TARGET]
    predicted = model.predict(X)
    return log_metrics(
        {
            "accuracy": accuracy_score(y, predicted),
            "f1_macro": f1_score(y, predicted, average="macro"),
            "roc_auc_ovr": roc_auc_score(y, model.predict_proba(X), multi_class="ovr"),
        }
    )


@step
def package(model, train: pd.DataFrame, valid: pd.DataFrame):
    """ONNX + signature + reference profile + lineage, checked against the model. The
    held-out rows go into the package for `shipml test`; the training rows only as row
    hashes with their labels (leakage test, rebuilding the training set from the data)."""
    return package_model(
        model, valid.drop(columns=[TARGET]), valid[TARGET],
        train=train.drop(columns=[TARGET]), train_labels=train[TARGET],
    )


@pipeline
def training(
    test_size: float = 0.25,
$hp_params
    seed: int = 42,
):
    df = validate(ingest())
    train_rows, valid_rows = split(df, test_size=test_size, seed=seed)
    model = train(
        train_rows,
$hp_pass
        seed=seed,
    )
    evaluate(model, valid_rows)
    package(model, train_rows, valid_rows)
