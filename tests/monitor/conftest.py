"""A penguins model packaged as the template's pipeline does it: trained on 75% of the
rows, validated (and profiled) on the other 25%; data made to drift on purpose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from shipml.data import table_profile
from shipml.model import ModelPackage, build_package
from tests.serving.conftest import penguins_data, penguins_model  # noqa: F401

SHIFTED = "bill_length_mm"  # moved by 2 standard deviations
DOUBLED = ("island", "Torgersen")  # its share doubled


@pytest.fixture(scope="session")
def split(penguins_data):  # noqa: F811
    X, y = penguins_data
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="session")
def monitored_package(tmp_path_factory, split) -> ModelPackage:
    X_train, X_valid, y_train, y_valid = split
    model = penguins_model(X_train, y_train)
    return build_package(
        model,
        X_valid,
        y_valid,
        path=tmp_path_factory.mktemp("monitor") / "penguins",
        reference_profile=table_profile(X_valid),
        train=X_train,
        train_labels=y_train,
    )


def holdout_rows(package: ModelPackage, repeat: int = 1) -> tuple[pd.DataFrame, pd.Series]:
    """The package's own hold-out rows (features and labels), ``repeat`` times."""
    frame = pd.read_parquet(package.path / "holdout.parquet")
    label = frame.pop(package.label)
    frame = pd.concat([frame] * repeat, ignore_index=True)
    return frame, pd.concat([label] * repeat, ignore_index=True)


def drifted(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """``frame`` with SHIFTED moved by 2 standard deviations and DOUBLED's share doubled
    (other rows' island set to it; every other column untouched)."""
    out = frame.copy()
    out[SHIFTED] = out[SHIFTED] + 2 * frame[SHIFTED].std()
    column, value = DOUBLED
    share = (frame[column] == value).mean()
    others = np.flatnonzero((frame[column] != value).to_numpy())
    rng = np.random.default_rng(seed)
    chosen = rng.choice(others, size=round(share * len(frame)), replace=False)
    out.loc[out.index[chosen], column] = value
    return out
