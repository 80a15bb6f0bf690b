import numpy as np
import pytest

from shipml.errors import InvalidRequest
from shipml.model.signature import Feature, Signature
from shipml.serving.validation import Validator

SIG = Signature(
    [
        Feature("island", "string", nullable=False, categories=["Biscoe", "Dream"]),
        Feature("sex", "string", nullable=True, categories=["female", "male"]),
        Feature("mass", "float", nullable=False),
        Feature("bill", "float", nullable=True),
    ],
    classes=["a", "b"],
)
V = Validator(SIG)
GOOD = {"island": ["Dream", "Biscoe"], "sex": [None, "male"], "mass": [1, 2.5], "bill": [None, 3]}


def test_valid_columns_follow_the_model_convention():
    rows = V.columns(GOOD)
    assert rows.n == 2
    assert rows.columns["sex"].tolist() == ["", "male"]
    assert rows.columns["mass"].dtype == np.float32
    assert np.isnan(rows.columns["bill"][0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"island": None}, "missing feature 'island'"),
        ({"extra": [1, 2]}, "unknown feature 'extra'"),
        ({"mass": ["heavy", 2]}, "feature 'mass' expects numbers; got 'heavy' at row 0"),
        ({"mass": [True, 2]}, "feature 'mass' expects numbers; got True"),
        ({"island": ["Dream", 3]}, "feature 'island' expects strings; got 3 at row 1"),
        ({"island": ["Dream", "Atlantis"]}, "unknown category 'Atlantis' at row 1"),
        ({"island": ["Dream", None]}, "feature 'island' is missing at row 1"),
        ({"mass": [1.0, None]}, "feature 'mass' is missing at row 1"),
        ({"mass": [1.0]}, "different numbers of rows"),
        ({"mass": [[1.0, 2.0], [3.0, 4.0]]}, "has shape [2, 2]"),
        ({"mass": [[1.0], [2.0, 3.0]]}, "ragged"),
    ],
)
def test_each_mistake_names_the_feature_and_value(change, message):
    raw = {**GOOD, **change}
    raw = {k: v for k, v in raw.items() if v is not None or k not in change}
    with pytest.raises(InvalidRequest) as err:
        V.columns(raw)
    assert message in err.value.message


def test_matrix_input_only_for_numeric_models():
    numeric = Validator(Signature([Feature("a", "float", False), Feature("b", "float", True)]))
    rows = numeric.matrix([[1, None], [2, 3]])
    assert rows.n == 2 and rows.matrix.shape == (2, 2) and rows.matrix.dtype == np.float32
    with pytest.raises(InvalidRequest, match="expected \\[rows, 2\\]"):
        numeric.matrix([[1, 2, 3]])
    with pytest.raises(InvalidRequest, match="feature 'a' is missing at row 1"):
        numeric.matrix([[1, 2], [None, 3]])
    with pytest.raises(InvalidRequest, match="all-numeric models"):
        V.matrix([[1, 2, 3, 4]])


def test_kinds_of_values_are_judged_without_pandas_as_pandas_did():
    import decimal

    import pandas as pd

    from shipml.serving.validation import _all_numbers, _all_text, _missing

    def objects(*values):
        return np.array(values, dtype=object)

    assert _all_numbers(objects(1, 2.5, None, np.float32(3), np.int64(4), decimal.Decimal(1)))
    assert _all_numbers(objects()) and _all_numbers(objects(None, pd.NA))
    for bad in (objects(1, True), objects(np.bool_(False)), objects("1"), objects(1, [2])):
        assert not _all_numbers(bad)
    assert _all_text(objects("a", None, float("nan"), pd.NA, np.str_("b")))
    for bad in (objects("a", 1.5), objects("a", True), objects("a", 1)):
        assert not _all_text(bad)
    missing = _missing(objects("x", None, float("nan"), "", "y", pd.NA))
    assert missing.tolist() == [False, True, True, True, False, True]


def test_a_server_answering_v2_never_imports_pandas(penguins_package, penguins_data):
    """The serving path (ONNX package, V2 JSON) needs no pandas: 265 ms and ~40 MiB less."""
    import json
    import subprocess
    import sys

    from tests.serving.test_app import v2_body

    X, _ = penguins_data
    body = json.dumps(v2_body(X.iloc[[0, 3]]))  # row 3 has missing values
    script = f"""
import asyncio, json, sys
from pathlib import Path
from shipml.asgi import post_json
from shipml.serving import ModelServer, Predictor
app = ModelServer(Predictor.load(Path({str(penguins_package.path)!r}), name="penguins"))
answer = asyncio.run(post_json(app, "/v2/models/penguins/infer", json.loads({body!r})))
assert answer.status == 200, answer.body
assert "pandas" not in sys.modules, "serving a V2 request imported pandas"
print(json.loads(answer.body)["outputs"][0]["data"])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith("[")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, 10**400], "int too large"),  # an int beyond float
        ([1.0, 1e39], "non-finite or out-of-range value 1e+39 at row 1"),  # beyond float32
        ([float("inf"), 1.0], "non-finite or out-of-range value inf at row 0"),
        ([1.0, False], "expects numbers; got False at row 1"),  # a bool among plain numbers
        ([1, "2"], "expects numbers; got '2' at row 1"),
    ],
)
def test_plain_json_numbers_take_the_fast_path_and_keep_every_refusal(values, message):
    with pytest.raises(InvalidRequest) as err:
        V._numbers(values, "mass")
    assert message in err.value.message
    fast = V._numbers([1, 2.5, None], "mass")  # floats, ints and nulls: float32, NaN missing
    slow = V._numbers(np.asarray([1, 2.5, None], dtype=object), "mass")
    assert fast.dtype == np.float32 and np.array_equal(fast, slow, equal_nan=True)


def test_a_checked_matrix_is_not_checked_twice_but_an_unchecked_one_is():
    numeric = Validator(Signature([Feature("a", "float", False), Feature("b", "float", True)]))
    checked = numeric._numbers([[1.0, None]], "x")
    assert numeric.matrix(checked, "x", checked=True).matrix.tolist()[0][0] == 1.0
    with pytest.raises(InvalidRequest, match="feature 'a' is missing at row 0"):
        numeric.matrix(numeric._numbers([[None, 1.0]], "x"), "x", checked=True)
    strings = np.asarray([["1", "2"]], dtype=object)  # a BYTES tensor is never "checked"
    with pytest.raises(InvalidRequest, match="expects numbers"):
        numeric.matrix(strings, "x", checked=True)
    with pytest.raises(InvalidRequest, match="non-finite"):
        numeric.matrix(np.asarray([[np.inf, 1.0]], dtype=np.float32), "x", checked=False)
