"""Data tests of this project (the data suite). shipml's ready-made data checks (schema,
ranges, nulls, duplicates, balance, leakage, skew) are configured in shipml.toml
[tests.data]; add what you know about this data here. The `dataset` fixture is the
snapshot the model under test was trained on."""

import pytest

pytestmark = pytest.mark.data

TARGET = $target


def test_most_rows_have_a_target(dataset):
    assert dataset[TARGET].notna().mean() >= 0.5


def test_the_target_takes_the_values_it_was_made_with(dataset):
$target_values
