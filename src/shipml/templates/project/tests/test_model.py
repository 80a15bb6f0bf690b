"""Model tests of this project (the model suite): behaviour we expect of any good model.

shipml's ready-made model checks (quality, baselines, slices, calibration, invariance,
directional expectations, missing values, parity, latency) are configured in shipml.toml
[tests.model]. The `model` fixture predicts through the serving path."""

import pandas as pd
import pytest

from shipml import model_input

pytestmark = pytest.mark.model


def typical(species: str) -> pd.DataFrame:
    """A textbook penguin of each species."""
    rows = {
        "Adelie": ("Torgersen", 38.8, 18.3, 190.0, 3700.0, "male"),
        "Chinstrap": ("Dream", 48.8, 18.4, 196.0, 3730.0, "male"),
        "Gentoo": ("Biscoe", 47.5, 15.0, 217.0, 5080.0, "male"),
    }
    names = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g",
             "sex"]
    return model_input(pd.DataFrame([rows[species]], columns=names))


@pytest.mark.parametrize("species", ["Adelie", "Chinstrap", "Gentoo"])
def test_a_textbook_penguin_gets_its_species(model, species):
    labels, probabilities = model.predict(typical(species))
    assert labels[0] == species
    assert probabilities[0].max() > 0.5


def test_an_unknown_sex_still_gets_a_confident_answer(model):
    row = typical("Gentoo").assign(sex="")
    labels, probabilities = model.predict(row)
    assert labels[0] == "Gentoo" and probabilities[0].max() > 0.5
