"""Data tests of this project (the data suite): what we know about penguins.

shipml's ready-made data checks (schema, ranges, nulls, duplicates, balance, leakage,
skew) are configured in shipml.toml [tests.data]; these add domain knowledge. The
`dataset` fixture is the snapshot the model under test was trained on."""

import pytest

pytestmark = pytest.mark.data


def test_gentoo_penguins_live_only_on_biscoe(dataset):
    islands = set(dataset.loc[dataset["species"] == "Gentoo", "island"])
    assert islands == {"Biscoe"}


def test_males_are_heavier_on_average_in_every_species(dataset):
    mass = dataset.dropna(subset=["sex"]).groupby(["species", "sex"])["body_mass_g"].mean()
    for species in dataset["species"].unique():
        assert mass[(species, "male")] > mass[(species, "female")]
