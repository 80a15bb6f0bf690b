"""The $name training pipeline: ingest → validate → split → train → evaluate → package.

Made by `shipml init --data $data_file --target $target_text` for a $task task. Run it
with `shipml run`; tune it with `shipml tune`. Every step is a plain function: call it
directly in a notebook or a test. Steps are cached: change a step (or features.py), a
parameter or the data, and only what depends on it runs again.
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

TARGET = $target
TASK = $task_repr
# Not features: $dropped_reason
DROPPED = $dropped


@step
def ingest(raw=dataset($dataset)) -> pd.DataFrame:
    """Read the dataset snapshot, drop rows without a target and columns that are not
    features."""
    df = raw.to_pandas().drop(columns=DROPPED, errors="ignore").dropna(subset=[TARGET])
$target_as_text    # Rows with identical features would fall on both sides of the split: the held-out
    # score would flatter the model (`shipml test` checks for that leakage).
    features = [c for c in df.columns if c != TARGET]
    return df.drop_duplicates(subset=features).reset_index(drop=True)


@step
def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Fail early on data the model cannot learn from."""
    if TARGET not in df.columns:
        raise ValueError(f"the data lacks the target column {TARGET!r}")
    if len(df) < 30:
        raise ValueError(f"only {len(df)} rows with a target; at least 30 are needed")
    if df[TARGET].nunique() < 2:
        raise ValueError(f"the target {TARGET!r} has a single value")
    return df


@step(outputs=("train", "valid"))
def split(df: pd.DataFrame, test_size: float = 0.25, seed: int = 42):
    """Training and validation rows$split_note."""
    from sklearn.model_selection import train_test_split

    train, valid = train_test_split(
        df, test_size=test_size, random_state=seed$stratify
    )
    return train, valid


@step
def train(
    train: pd.DataFrame,
$hp_params
    seed: int = 42,
):
    """Fit the model on the training rows. Five-fold cross-validation on those rows scores
    it first ($cv_metric, the objective of `shipml tune`; each fold is reported, so the
    search can stop a poor trial early)."""
    from sklearn.base import clone
    from sklearn.model_selection import $folds

    from features import build_model

    X, y = model_input(train.drop(columns=[TARGET])), train[TARGET]
    model = build_model(
        X,
$hp_pass
        seed=seed,
    )
    scores = []
    for fold, (fit_rows, score_rows) in enumerate($folds(5, shuffle=True, random_state=seed).split(X, y)):
        fitted = clone(model).fit(X.iloc[fit_rows], y.iloc[fit_rows])
        scores.append(fitted.score(X.iloc[score_rows], y.iloc[score_rows]))
        report_intermediate(sum(scores) / len(scores), fold)
    log_metrics({$cv_metric_repr: sum(scores) / len(scores)})
    return model.fit(X, y)


@step
def evaluate(model, valid: pd.DataFrame) -> dict:
    """Quality on the held-out rows."""
    from sklearn import metrics

    X = model_input(valid.drop(columns=[TARGET]))
    y = valid[TARGET]
    predicted = model.predict(X)
$evaluate


@step
def package(model, train: pd.DataFrame, valid: pd.DataFrame):
    """ONNX + signature + reference profile + lineage, checked against the model. The
    held-out rows go into the package for `shipml test`; the training rows only as row
    hashes with their targets."""
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
