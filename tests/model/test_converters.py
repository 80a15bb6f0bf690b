"""XGBoost, LightGBM and CatBoost packaged as ONNX, bare and inside the template's
preprocessing, for classification and regression; parity, missing extras, refusals."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from catboost import CatBoostClassifier, CatBoostRegressor
from lightgbm import LGBMClassifier, LGBMRegressor
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
from xgboost import XGBClassifier, XGBRegressor

from shipml.errors import ModelError, ParityError
from shipml.model import build_package, model_input
from shipml.model.converters import FRAMEWORKS, frameworks_in, require
from shipml.model.labels import LabelEncodedClassifier

TREES = 40
ESTIMATORS = {
    ("lightgbm", "classification"): lambda: LGBMClassifier(n_estimators=TREES, verbose=-1),
    ("lightgbm", "regression"): lambda: LGBMRegressor(n_estimators=TREES, verbose=-1),
    # XGBoost learns from 0..k-1 only: the wrapper takes the species names
    ("xgboost", "classification"): lambda: LabelEncodedClassifier(
        XGBClassifier(n_estimators=TREES)
    ),
    ("xgboost", "regression"): lambda: XGBRegressor(n_estimators=TREES),
    ("catboost", "classification"): lambda: CatBoostClassifier(
        iterations=TREES, verbose=0, thread_count=1
    ),
    ("catboost", "regression"): lambda: CatBoostRegressor(
        iterations=TREES, verbose=0, thread_count=1
    ),
}
TARGETS = {"classification": "species", "regression": "body_mass_g"}


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins().drop(columns=["year"])


def preprocessing(X: pd.DataFrame) -> ColumnTransformer:
    """The template's: strings imputed and one-hot encoded, numbers imputed."""
    categorical = [c for c in X.columns if X[c].dtype == object]
    numeric = [c for c in X.columns if c not in categorical]
    return ColumnTransformer(
        [
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(missing_values="", strategy="constant", fill_value="?"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
            ("numeric", SimpleImputer(strategy="median"), numeric),
        ],
        sparse_threshold=0,
    )


@pytest.mark.parametrize("shape", ["pipeline", "bare"])
@pytest.mark.parametrize("key", list(ESTIMATORS), ids=lambda k: "-".join(k))
def test_boosted_trees_package_as_onnx_with_parity(penguins, tmp_path, key, shape):
    framework, task = key
    target = TARGETS[task]
    df = penguins.dropna(subset=[target])
    X = model_input(df.drop(columns=[target]))
    if shape == "bare":  # numbers only, as a bare booster takes them (missing values too)
        X = X.select_dtypes("number")
    estimator = ESTIMATORS[key]()
    model = (
        estimator if shape == "bare" else Pipeline([("pre", preprocessing(X)), ("m", estimator)])
    )
    model.fit(X, df[target])
    pkg = build_package(model, X, df[target], path=tmp_path / "pkg")
    assert pkg.format == "onnx" and not (tmp_path / "pkg" / "model.skops").exists()
    assert frameworks_in(model) == [framework]
    assert pkg.manifest["final_estimator"].split(".")[0] in (framework, "shipml")
    assert pkg.signature.task == task
    assert pkg.signature.onnx_input == ("matrix" if shape == "bare" else "columns")
    parity = pkg.manifest["parity"]
    assert parity["label_agreement"] == 1.0 and parity["max_probability_diff"] <= 1e-4
    labels, proba = pkg.predict(X)
    expected = np.asarray(model.predict(X)).reshape(-1)
    if task == "classification":
        assert pkg.signature.classes == ["Adelie", "Chinstrap", "Gentoo"]
        assert (labels == expected).all()
        assert proba is not None
        assert np.abs(proba - model.predict_proba(X)).max() <= 1e-4
    else:
        assert proba is None
        assert np.allclose(labels, expected, rtol=1e-5)
    if shape == "bare":  # boosters take a missing value as it is: measured as nullable
        assert all(f.nullable for f in pkg.signature.features)


def test_regression_parity_is_relative_to_the_size_of_the_prediction(penguins, tmp_path):
    df = penguins.dropna(subset=["body_mass_g"])
    X = model_input(df[["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]])
    model = LGBMRegressor(n_estimators=200, verbose=-1).fit(X, df["body_mass_g"])
    pkg = build_package(model, X, df["body_mass_g"], path=tmp_path / "ok")
    labels, _ = pkg.predict(X)
    # float32 near 4,000 is spaced 0.00024 apart: absolute 1e-4 could never hold
    assert np.abs(labels - model.predict(X)).max() > 1e-4
    assert pkg.manifest["parity"]["max_probability_diff"] <= 1e-5
    with pytest.raises(ParityError, match="of their size") as err:
        build_package(model, X, df["body_mass_g"], path=tmp_path / "strict", tolerance=1e-9)
    assert "instead of" in err.value.message and err.value.exit_code == 8
    assert not (tmp_path / "strict").exists()


def test_label_encoded_classifier_keeps_the_labels_and_searches_its_estimator(penguins):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    df = penguins.dropna(subset=["species"])
    X = model_input(df.select_dtypes("number"))
    search = GridSearchCV(
        LabelEncodedClassifier(XGBClassifier(n_estimators=5)),
        {"estimator__max_depth": [2, 3]},
        cv=2,
    ).fit(X, df["species"])
    model = search.best_estimator_
    assert list(model.classes_) == ["Adelie", "Chinstrap", "Gentoo"]
    assert set(model.predict(X)) <= set(model.classes_)
    assert model.predict_proba(X).shape == (len(X), 3)
    assert clone(model).get_params()["estimator__max_depth"] == model.estimator.max_depth


def test_a_missing_extra_is_a_clear_error_naming_it(penguins, tmp_path, monkeypatch):
    df = penguins.dropna(subset=["species"])
    X = model_input(df.select_dtypes("number"))
    model = LGBMClassifier(n_estimators=3, verbose=-1).fit(X, df["species"])
    monkeypatch.delitem(sys.modules, "onnxmltools", raising=False)
    monkeypatch.setitem(sys.modules, "onnxmltools", None)  # `import onnxmltools` fails
    monkeypatch.setattr("shipml.model.converters._registered", set())
    with pytest.raises(ModelError) as err:
        build_package(model, X, df["species"], path=tmp_path / "pkg")
    assert "shipml[lightgbm]" in err.value.message and "onnxmltools" in err.value.message
    assert err.value.hint == "install it: pip install 'shipml[lightgbm]'"
    assert err.value.exit_code == 8
    assert not (tmp_path / "pkg").exists()
    with pytest.raises(ModelError, match=r"shipml\[xgboost\]"):
        require("xgboost")
    assert sorted(FRAMEWORKS) == ["catboost", "lightgbm", "xgboost"]


def test_a_boosted_model_onnx_cannot_express_is_refused_never_pickled(penguins, tmp_path):
    df = penguins.dropna(subset=["species"])
    X = model_input(df[["island", "bill_length_mm", "flipper_length_mm"]])
    # CatBoost's own categorical features have no ONNX export
    model = CatBoostClassifier(iterations=5, verbose=0, cat_features=["island"])
    model.fit(X, df["species"])
    with pytest.raises(ModelError, match="bare CatBoostClassifier cannot take") as err:
        build_package(model, X, df["species"], path=tmp_path / "pkg")
    assert "island" in err.value.message and "OneHotEncoder" in (err.value.hint or "")
    assert not (tmp_path / "pkg").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_lightgbm_thresholds_between_two_float32_values_keep_their_side(tmp_path):
    """LightGBM splits two adjacent float32 values at their midpoint (a double); cast to
    float32 it rounds up onto the upper value, which would go left in ONNX and right in
    LightGBM: every row of the upper value would change class."""
    low = np.nextafter(np.float32(1.0), np.float32(2.0))
    high = np.nextafter(low, np.float32(2.0))
    X = pd.DataFrame({"x": np.r_[np.full(60, low), np.full(60, high)].astype(np.float32)})
    y = np.r_[np.full(60, "low"), np.full(60, "high")]
    model = LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1).fit(X, y)
    threshold = model.booster_.dump_model()["tree_info"][0]["tree_structure"]["threshold"]
    assert float(np.float32(threshold)) == float(high) > threshold  # the trap is there
    pkg = build_package(model, X, y, path=tmp_path / "pkg")
    assert pkg.manifest["parity"]["label_agreement"] == 1.0
    labels, _ = pkg.predict(X)
    assert (labels == y).all()
