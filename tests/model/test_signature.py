"""The signature comes from every row the model saw, and records, per string feature,
whether the model handles a category it never saw (and so whether to accept one)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from shipml.errors import InvalidRequest, ModelError
from shipml.model import Signature, build_package, model_input
from shipml.serving.validation import Validator

FEATURES = ["island", "sex", "bill_length_mm", "flipper_length_mm"]


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    """Training rows with every island; validation rows without Torgersen."""
    df = load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    valid = df[df["island"] != "Torgersen"].sample(60, random_state=0)
    train = df.drop(valid.index)
    assert (train["island"] == "Torgersen").sum() > 10
    return train[FEATURES], train["species"], valid[FEATURES], valid["species"]


def fitted(X: pd.DataFrame, y: pd.Series, handle_unknown: str) -> Pipeline:
    cats = make_pipeline(
        SimpleImputer(missing_values="", strategy="constant", fill_value="?"),
        OneHotEncoder(handle_unknown=handle_unknown),
    )
    pre = ColumnTransformer(
        [("cat", cats, ["island", "sex"]), ("num", SimpleImputer(), FEATURES[2:])],
        sparse_threshold=0,
    )
    model = Pipeline([("pre", pre), ("clf", DecisionTreeClassifier(max_depth=4, random_state=0))])
    return model.fit(model_input(X), y)


def test_a_category_seen_only_in_training_is_known(tmp_path, split):
    X, y, Xv, yv = split
    model = fitted(X, y, "error")
    package = build_package(model, Xv, yv, path=tmp_path / "p", train=X, train_labels=y)
    island = {f.name: f for f in package.signature.features}["island"]
    assert "Torgersen" in island.categories
    assert island.unseen == "error" and island.handles_unseen is False
    validator = Validator(package.signature)
    row = {"island": ["Torgersen"], "sex": ["male"], "bill_length_mm": [40.0]}
    assert validator.columns({**row, "flipper_length_mm": [190.0]}).n == 1
    with pytest.raises(InvalidRequest, match="unknown category 'Atlantis'"):
        validator.columns({**row, "island": ["Atlantis"], "flipper_length_mm": [190.0]})


def test_unseen_categories_are_accepted_where_the_model_handles_them(tmp_path, split):
    X, y, Xv, yv = split
    package = build_package(fitted(X, y, "ignore"), Xv, yv, path=tmp_path / "p", train=X)
    features = {f.name: f for f in package.signature.features}
    assert features["island"].unseen == "accept" and features["island"].handles_unseen
    row = {"island": ["Atlantis"], "sex": ["?"], "bill_length_mm": [40.0]}
    assert Validator(package.signature).columns({**row, "flipper_length_mm": [190.0]}).n == 1
    strict = build_package(
        fitted(X, y, "ignore"), Xv, yv, path=tmp_path / "q", unseen={"island": "error"}
    )
    policies = {f.name: f.unseen for f in strict.signature.features if f.type == "string"}
    assert policies == {"island": "error", "sex": "accept"}


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"island": "accept"}, "cannot be accepted"),  # the model fails on unseen values
        ({"island": "maybe"}, "invalid unseen-category policy"),
        ({"bill_length_mm": "accept"}, "invalid unseen-category policy"),
        ({"nope": "error"}, "invalid unseen-category policy"),
    ],
)
def test_impossible_policies_are_refused_at_packaging(tmp_path, split, policy, message):
    X, y, Xv, yv = split
    with pytest.raises(ModelError, match=message):
        build_package(fitted(X, y, "error"), Xv, yv, path=tmp_path / "p", unseen=policy)
    assert not (tmp_path / "p").exists()


def test_an_older_signature_without_policies_still_loads():
    old = {
        "features": [
            {"name": "island", "type": "string", "nullable": False, "categories": ["Dream"]},
            {"name": "x", "type": "float", "nullable": True, "categories": None},
        ],
        "classes": ["a"],
    }
    sig = Signature.from_dict(json.loads(json.dumps(old)))
    assert sig.features[0].unseen == "error" and not sig.features[0].handles_unseen


def test_a_one_row_frame_with_none_in_a_numeric_column(tmp_path, split):
    X, y, Xv, yv = split
    package = build_package(fitted(X, y, "ignore"), Xv, yv, path=tmp_path / "p")
    row = pd.DataFrame([{"island": "Dream", "sex": None, "bill_length_mm": None}])
    row["flipper_length_mm"] = [None]
    assert model_input(row, package.signature)["bill_length_mm"].isna().all()
    labels, _ = package.predict(row)  # imputed: a prediction, not a pandas ValueError
    assert len(labels) == 1
    row["bill_length_mm"] = ["long"]
    with pytest.raises(ModelError, match="feature 'bill_length_mm' expects numbers; got 'long'"):
        package.predict(row)
