"""The project's own unit tests: its steps are plain functions, tested directly.

`shipml test` runs them as the unit suite; the score marks say which tests of the ML
Test Score they automate (`shipml score`)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline
from shipml import model_input


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    df = $read_data
    return df.drop(columns=pipeline.DROPPED, errors="ignore").dropna(subset=[pipeline.TARGET])


@pytest.mark.score("data-7")
def test_validate_rejects_a_single_target_value(data):
    one = data.head(30).assign(**{pipeline.TARGET: data[pipeline.TARGET].iloc[0]})
    with pytest.raises(ValueError, match="single value"):
        pipeline.validate(one)


@pytest.mark.score("data-7")
def test_split_keeps_every_row_once(data):
    train, valid = pipeline.split(data, test_size=0.25, seed=1)
    assert len(train) + len(valid) == len(data)
    assert not set(train.index) & set(valid.index)


@pytest.mark.score("infra-2")
def test_model_beats_a_constant_guess(data):
    train, valid = pipeline.split(data, test_size=0.25, seed=1)
    model = pipeline.train(train, n_estimators=20, seed=1)
    X, y = model_input(valid.drop(columns=[pipeline.TARGET])), valid[pipeline.TARGET]
$beats_guess


@pytest.mark.score("infra-2")
def test_model_answers_rows_with_every_feature_missing(data):
    train, valid = pipeline.split(data, test_size=0.25, seed=1)
    model = pipeline.train(train, n_estimators=20, seed=1)
    row = valid.drop(columns=[pipeline.TARGET]).head(1).copy()
    for col in row.columns:
        row[col] = float("nan") if pd.api.types.is_numeric_dtype(row[col]) else None
    assert len(model.predict(model_input(row))) == 1


@pytest.mark.score("infra-1")
def test_training_twice_gives_the_same_model(data):
    """Training is reproducible: same rows, same seed, the same ONNX model."""
    train, valid = pipeline.split(data, test_size=0.25, seed=5)
    first = pipeline.package(pipeline.train(train, n_estimators=20, seed=5), train, valid)
    second = pipeline.package(pipeline.train(train, n_estimators=20, seed=5), train, valid)
    assert first.model_digest == second.model_digest


@pytest.mark.score("infra-3")
def test_the_whole_pipeline_runs_end_to_end_on_a_sample(data):
    """Every step in order, as `shipml run` chains them, on a sample of the rows."""
    sample = data.sample(n=min(len(data), 200), random_state=3).reset_index(drop=True)
    df = pipeline.validate(sample)
    train, valid = pipeline.split(df, test_size=0.25, seed=3)
    model = pipeline.train(train, n_estimators=20, seed=3)
    pipeline.evaluate(model, valid)
    package = pipeline.package(model, train, valid)
    assert package.manifest["parity"]$parity
