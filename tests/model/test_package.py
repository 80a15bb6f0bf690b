import json
import pickle

import numpy as np
import pandas as pd
import pytest
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import RadiusNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipml.errors import ModelError, ParityError, UnsafeModelError
from shipml.model import ModelPackage, build_package, load_skops, model_input, refuse_pickle
from shipml.model.package import row_hashes
from shipml.model.signature import Feature, Signature
from shipml.serving.predictor import Predictor
from shipml.serving.validation import Rows

CATEGORICAL = ["island", "sex"]
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]


@pytest.fixture(scope="module")
def penguins() -> tuple[pd.DataFrame, pd.Series]:
    df = load_penguins().dropna(subset=["species"])
    assert df["sex"].isna().any() and df["bill_length_mm"].isna().any()  # real missing values
    return df.drop(columns=["species"]), df["species"]


def mixed_pipeline(estimator, scale: bool = True) -> Pipeline:
    numeric = make_pipeline(
        SimpleImputer(strategy="median"), *([StandardScaler()] if scale else [])
    )
    pre = ColumnTransformer(
        [
            (
                "cat",
                make_pipeline(
                    SimpleImputer(missing_values="", strategy="constant", fill_value="?"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                CATEGORICAL,
            ),
            ("num", numeric, NUMERIC),
        ],
        sparse_threshold=0,
    )
    return Pipeline([("pre", pre), ("clf", estimator)])


@pytest.mark.parametrize(
    "estimator",
    [
        (LogisticRegression(max_iter=2000), True),
        # Trees compare float32 thresholds: float64 scaling before them breaks parity.
        (RandomForestClassifier(n_estimators=30, random_state=0), False),
    ],
    ids=["logistic", "forest"],
)
def test_string_categories_and_missing_values_convert_and_pass_parity(
    penguins, tmp_path, estimator
):
    X, y = penguins
    model = mixed_pipeline(*estimator).fit(model_input(X), y)
    pkg = build_package(model, X, y, path=tmp_path / "pkg", lineage={"run_id": "r1"})
    assert pkg.format == "onnx"
    assert pkg.manifest["parity"]["label_agreement"] == 1.0
    assert pkg.manifest["parity"]["max_probability_diff"] <= 1e-4
    assert sorted(pkg.manifest["files"]) == [
        "holdout.parquet",
        "lineage.json",
        "model.onnx",
        "profile.json",
        "signature.json",
    ]
    sig = pkg.signature
    by_name = {f.name: f for f in sig.features}
    assert by_name["sex"].type == "string" and by_name["sex"].nullable
    assert by_name["island"].categories == ["Biscoe", "Dream", "Torgersen"]
    assert by_name["bill_length_mm"].type == "float" and by_name["bill_length_mm"].nullable
    assert sig.classes == ["Adelie", "Chinstrap", "Gentoo"]
    labels, proba = pkg.predict(X)
    assert (labels == model.predict(model_input(X))).all()
    assert proba is not None and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert json.loads((tmp_path / "pkg" / "lineage.json").read_text()) == {"run_id": "r1"}


def test_nullability_is_measured_not_read_off_the_validation_rows(penguins, tmp_path):
    X, y = penguins
    complete = X.dropna()
    model = mixed_pipeline(LogisticRegression(max_iter=2000)).fit(model_input(X), y)
    sig = build_package(model, complete, y.loc[complete.index], path=tmp_path / "a").signature
    assert all(f.nullable for f in sig.features)  # every column has an imputer
    plain = LogisticRegression(max_iter=2000).fit(
        model_input(complete[NUMERIC]), y.loc[complete.index]
    )
    sig = build_package(
        plain, complete[NUMERIC], y.loc[complete.index], path=tmp_path / "b"
    ).signature
    assert not any(f.nullable for f in sig.features)  # NaN reaches the model: not accepted


def test_parity_failure_is_a_clear_error_and_writes_nothing(penguins, tmp_path):
    X, y = penguins
    # A real trap: float64 scaling before trees, whose thresholds ONNX compares in float32.
    model = mixed_pipeline(RandomForestClassifier(n_estimators=30, random_state=0), scale=True)
    model.fit(model_input(X), y)
    with pytest.raises(ParityError) as err:
        build_package(model, X, y, path=tmp_path / "pkg")
    assert "probabilities differ by up to" in err.value.message
    assert err.value.hint
    assert not (tmp_path / "pkg").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary folder left either


def test_tied_votes_are_not_a_parity_failure(tmp_path):
    """A forest on noisy data often splits its votes evenly (10 trees of 20 each way):
    float32 and float64 sums break such ties differently, and either label is the
    model's answer. Those rows agree (and are counted); the probabilities still must."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((400, 5)), columns=list("abcde"))
    y = pd.Series(rng.choice(["no", "yes"], 400))
    train = model_input(X.head(200)), y.head(200)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(*train)
    pkg = build_package(model, X.tail(200), y.tail(200), path=tmp_path / "pkg")
    parity = pkg.manifest["parity"]
    assert pkg.format == "onnx" and parity["label_agreement"] == 1.0
    assert parity["tied_rows"] > 0  # this data does hit ties
    assert parity["max_probability_diff"] <= parity["tolerance"]


def test_a_true_false_target_packages(tmp_path):
    """skl2onnx makes classes False/True the labels 0/1: parity compares them as such."""
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.random((200, 3)), columns=["a", "b", "c"])
    y = pd.Series(X["a"] + rng.random(200) * 0.3 > 0.6)
    model = LogisticRegression().fit(model_input(X), y)
    pkg = build_package(model, X, y, path=tmp_path / "pkg")
    assert pkg.format == "onnx" and pkg.manifest["parity"]["label_agreement"] == 1.0
    labels, _ = pkg.predict(X)
    assert list(labels.astype(bool)) == list(model.predict(model_input(X)))


def test_zero_tolerance_catches_float_differences(penguins, tmp_path):
    X, y = penguins
    model = mixed_pipeline(LogisticRegression(max_iter=2000)).fit(model_input(X), y)
    with pytest.raises(ParityError, match="probabilities differ by up to"):
        build_package(model, X, y, path=tmp_path / "pkg", tolerance=0.0)


def test_a_modified_package_is_refused(penguins, tmp_path):
    X, y = penguins
    model = mixed_pipeline(LogisticRegression(max_iter=2000)).fit(model_input(X), y)
    build_package(model, X, y, path=tmp_path / "pkg")
    (tmp_path / "pkg" / "signature.json").write_text("{}")
    with pytest.raises(ModelError, match="was modified"):
        ModelPackage.load(tmp_path / "pkg")


def test_skops_fallback_loads_only_with_configured_trusted_types(tmp_path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80)})
    y = np.where(X.a + X.b > 0, "yes", "no")
    model = RadiusNeighborsClassifier(radius=5.0).fit(model_input(X), y)
    pkg = build_package(model, X, y, path=tmp_path / "pkg")
    assert pkg.format == "skops" and "ONNX" in pkg.manifest["onnx_error"]
    needed = pkg.manifest["types_to_trust"]
    assert needed  # skops lists what it does not trust by default
    with pytest.raises(UnsafeModelError, match="not trusted"):
        load_skops(pkg.model_file, trusted_types=[])
    loaded = load_skops(pkg.model_file, trusted_types=needed)
    assert (loaded.predict(model_input(X)) == model.predict(model_input(X))).all()


def test_pickle_files_are_refused_by_name_and_by_content(tmp_path):
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    (tmp_path / "model.bin").write_bytes(pickle.dumps(model))
    for name in ("model.pkl", "model.bin"):
        with pytest.raises(UnsafeModelError) as err:
            refuse_pickle(tmp_path / name)
        assert "pickle-family" in err.value.message and "package_model" in (err.value.hint or "")
    with pytest.raises(UnsafeModelError):
        load_skops(tmp_path / "model.pkl", trusted_types=[])


@pytest.mark.parametrize(
    "content",
    [pickle.dumps({"a": 1}, protocol=0), b"not a zip", b"", b"PK\x05\x06" + b"\0" * 18],
)
def test_a_skops_file_that_is_not_skops_is_a_model_error(tmp_path, content):
    """A text pickle (protocol 0) or garbage named model.skops: a clear error, no
    traceback (skops never unpickles it)."""
    file = tmp_path / "model.skops"
    file.write_bytes(content)
    with pytest.raises(ModelError, match="not a readable skops file"):
        load_skops(file, trusted_types=["builtins.dict"])


def test_package_needs_a_dataframe(tmp_path):
    with pytest.raises(ModelError, match="non-empty DataFrame"):
        build_package(LogisticRegression(), [[1.0]], path=tmp_path / "p")  # type: ignore[arg-type]


def test_the_same_model_gives_the_same_onnx_bytes_under_any_hash_seed(tmp_path):
    import os
    import subprocess
    import sys

    script = (
        "from sklearn.datasets import load_breast_cancer\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from shipml.model import build_package, model_input\n"
        "X, y = load_breast_cancer(return_X_y=True, as_frame=True)\n"
        "m = LogisticRegression(max_iter=5000).fit(model_input(X), y)\n"
        "import sys; print(build_package(m, X, y, path=sys.argv[1]).onnx_sha256)\n"
    )
    digests = set()
    for seed in ("1", "2", "5"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / seed)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_holdout_rows_and_training_row_hashes_are_kept(penguins, tmp_path):
    X, y = penguins
    train_X, valid_X = X.iloc[:200], X.iloc[200:]
    train_y, valid_y = y.iloc[:200], y.iloc[200:]
    model = mixed_pipeline(LogisticRegression(max_iter=500), True).fit(
        model_input(train_X), train_y
    )
    pkg = build_package(model, valid_X, valid_y, path=tmp_path / "pkg", train=train_X)
    hX, hy = pkg.holdout()
    assert len(hX) == len(valid_X) and list(hX.columns) == pkg.signature.names
    assert hy is not None and hy.tolist() == valid_y.tolist()
    hashes = pkg.train_row_hashes()
    assert hashes is not None and len(hashes) == len(train_X.drop_duplicates())
    # Only the held-out row copied from the training rows is found among the hashes.
    leaked = pd.concat([valid_X.iloc[:8], train_X.iloc[[7]]], ignore_index=True)
    found = np.isin(row_hashes(model_input(leaked)), hashes)
    keyed = model_input(leaked).fillna(-1.0).apply(tuple, axis=1)
    in_train = set(model_input(train_X).fillna(-1.0).apply(tuple, axis=1))
    assert found.tolist() == [k in in_train for k in keyed]
    assert found[-1] and not found[:8].all()
    assert "train_rows.parquet" in pkg.manifest["files"]


def test_column_names_that_are_not_identifiers_stay_onnx(penguins, tmp_path):
    """skl2onnx makes each graph input an identifier ("bill length (mm)" -> "bill_length__mm_",
    two names may become one): the package records the graph's names, so the model is
    still ONNX, passes parity, and serves by its features' own names."""
    X, y = penguins
    renamed = {
        "island": "1st island",
        "sex": 'sex "M/F"',
        "bill_length_mm": "bill length (mm)",
        "bill_depth_mm": "bill depth mm",
        "flipper_length_mm": "bill_depth_mm",  # the same identifier as the one before
        "body_mass_g": "naïve mass",
        "year": "class",
    }
    X = X.rename(columns=renamed)
    strings = [renamed["island"], renamed["sex"]]
    numbers = [c for c in X.columns if c not in strings]
    encode = make_pipeline(
        SimpleImputer(missing_values="", strategy="constant", fill_value="?"),
        OneHotEncoder(handle_unknown="ignore"),
    )
    pre = ColumnTransformer(
        [("cat", encode, strings), ("num", SimpleImputer(strategy="median"), numbers)],
        sparse_threshold=0,
    )
    model = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=2000))])
    model.fit(model_input(X), y)
    pkg = build_package(model, X, y, path=tmp_path / "pkg")
    assert pkg.format == "onnx", pkg.manifest.get("onnx_error")
    assert pkg.manifest["parity"]["label_agreement"] == 1.0
    sig = ModelPackage.load(tmp_path / "pkg").signature
    assert sig.names == list(X.columns)
    assert sig.onnx_names is not None and len(set(sig.onnx_names)) == len(X.columns)
    assert all(n.isidentifier() for n in sig.onnx_names)

    predictor = Predictor.load(tmp_path / "pkg")
    rows = model_input(X.head(40), sig)
    columns = {
        f.name: rows[f.name].to_numpy(dtype=object if f.type == "string" else np.float32)
        for f in sig.features
    }
    served = predictor.run(predictor.feeds(Rows(40, columns=columns))).labels
    assert list(served) == list(model.predict(rows))


def test_a_signature_without_onnx_names_keeps_its_bytes_and_bad_ones_are_refused():
    sig = Signature(features=[Feature("a", "float", False), Feature("b", "float", False)])
    assert "onnx_names" not in sig.to_dict()
    assert Signature.from_dict(sig.to_dict()).input_names == ["a", "b"]
    for bad in (["a"], "ab", [1, 2]):
        with pytest.raises(ModelError, match="one input name per feature"):
            Signature.from_dict({**sig.to_dict(), "onnx_names": bad})
