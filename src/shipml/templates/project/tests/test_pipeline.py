"""The project's own tests: its steps are plain functions, tested directly."""

from pathlib import Path

import pandas as pd
import pytest

import pipeline
from shipml import model_input


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(Path(__file__).parents[1] / "data" / "penguins.csv").dropna(subset=[pipeline.TARGET])


def test_validate_rejects_a_single_class(data):
    with pytest.raises(ValueError, match="single class"):
        pipeline.validate(data[data[pipeline.TARGET] == "Adelie"])


def test_split_keeps_every_species_in_both_parts(data):
    train, valid = pipeline.split(data, test_size=0.25, seed=1)
    assert set(train[pipeline.TARGET]) == set(valid[pipeline.TARGET]) == set(data[pipeline.TARGET])
    assert len(train) + len(valid) == len(data)


def test_model_beats_guessing(data):
    train, valid = pipeline.split(data, test_size=0.25, seed=1)
    model = pipeline.train(train, n_estimators=20, seed=1)
    X = model_input(valid.drop(columns=[pipeline.TARGET]))
    accuracy = (model.predict(X) == valid[pipeline.TARGET]).mean()
    assert accuracy > 0.8


def test_model_handles_missing_values(data):
    train, valid = pipeline.split(data, test_size=0.25, seed=1)
    model = pipeline.train(train, n_estimators=20, seed=1)
    row = valid.drop(columns=[pipeline.TARGET]).head(1).copy()
    row["sex"] = None
    row["body_mass_g"] = float("nan")
    assert model.predict(model_input(row))[0] in set(data[pipeline.TARGET])
