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
    df = pd.read_csv(Path(__file__).parents[1] / "data" / "penguins.csv")
    return df.drop(columns=pipeline.DROPPED).dropna(subset=[pipeline.TARGET])


@pytest.mark.score("data-7")
def test_validate_rejects_a_single_class(data):
    with pytest.raises(ValueError, match="single class"):
        pipeline.validate(data[data[pipeline.TARGET] == "Adelie"])


@pytest.mark.score("data-7")
def test_split_keeps_every_species_in_both_parts(data):
    train, valid = pipeline.split(data, test_size=0.25, seed=1)
    assert set(train[pipeline.TARGET]) == set(valid[pipeline.TARGET]) == set(data[pipeline.TARGET])
    assert len(train) + len(valid) == len(data)


@pytest.mark.score("infra-2")
def test_model_beats_guessing(data):
    train, valid = pipeline.split(data, test_size=0.25, seed=1)
    model = pipeline.train(train, n_estimators=20, seed=1)
    X = model_input(valid.drop(columns=[pipeline.TARGET]))
    accuracy = (np.ravel(model.predict(X)) == valid[pipeline.TARGET]).mean()
    assert accuracy > 0.8


@pytest.mark.score("infra-2")
def test_model_handles_missing_values(data):
    train, valid = pipeline.split(data, test_size=0.25, seed=1)
    model = pipeline.train(train, n_estimators=20, seed=1)
    row = valid.drop(columns=[pipeline.TARGET]).head(1).copy()
    row["sex"] = None
    row["body_mass_g"] = float("nan")
    assert np.ravel(model.predict(model_input(row)))[0] in set(data[pipeline.TARGET])


@pytest.mark.score("infra-1")
def test_training_twice_gives_the_same_model(data):
    """Training is reproducible: same rows, same seed, the same ONNX model."""
    train, valid = pipeline.split(data, test_size=0.25, seed=5)
    first = pipeline.package(pipeline.train(train, n_estimators=20, seed=5), train, valid)
    second = pipeline.package(pipeline.train(train, n_estimators=20, seed=5), train, valid)
    assert first.model_digest == second.model_digest


@pytest.mark.score("infra-3")
def test_the_whole_pipeline_runs_end_to_end_on_a_sample(data):
    """Every step in order, as `shipml run` chains them, on a third of the rows."""
    sample = data.groupby(pipeline.TARGET).head(40)
    df = pipeline.validate(sample.reset_index(drop=True))
    train, valid = pipeline.split(df, test_size=0.25, seed=3)
    model = pipeline.train(train, n_estimators=20, seed=3)
    metrics = pipeline.evaluate(model, valid)
    package = pipeline.package(model, train, valid)
    assert metrics["accuracy"] > 0.8
    assert package.manifest["parity"]["label_agreement"] == 1.0
