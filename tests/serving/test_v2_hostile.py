"""V2 requests a hostile or careless client sends that once crashed the server (a 500) or
were answered as if they were right: each is now a clear 4xx saying what was wrong."""

from __future__ import annotations

import gzip
import json

import pytest
from starlette.testclient import TestClient

from shipml.model import build_package, model_input
from shipml.serving import ModelServer, Predictor
from tests.serving.hostile import ROW


@pytest.fixture(scope="module")
def penguins(penguins_package):
    with TestClient(ModelServer(Predictor.load(penguins_package.path, name="penguins"))) as c:
        yield c


@pytest.fixture(scope="module")
def cancer(cancer_package):
    with TestClient(ModelServer(Predictor.load(cancer_package.path, name="cancer"))) as c:
        yield c


@pytest.fixture(scope="module")
def regression(tmp_path_factory, cancer_data):
    from sklearn.linear_model import LinearRegression

    X, y = cancer_data
    reg = LinearRegression().fit(model_input(X), y)
    pkg = build_package(reg, X, y, path=tmp_path_factory.mktemp("pkg") / "reg")
    with TestClient(ModelServer(Predictor.load(pkg.path, name="reg"))) as c:
        yield c


def matrix(shape, data, datatype="FP32"):
    return {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}


def binary(tensor, blob):
    head = json.dumps({"inputs": [tensor]}).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


def refused(answer, status=400):
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


@pytest.mark.parametrize("datatype", [["FP32"], {"FP32": 1}])
def test_a_datatype_that_is_not_a_string_is_a_400(cancer, penguins, datatype):
    body = matrix([1, 30], [1.0] * 30, datatype)
    assert "datatype" in refused(cancer.post("/v2/models/cancer/infer", json=body))
    tensor = {"name": "bill_length_mm", "shape": [1], "datatype": datatype, "data": [1.0]}
    body = {"inputs": [tensor]}
    assert "datatype" in refused(penguins.post("/v2/models/penguins/infer", json=body))


@pytest.mark.parametrize("shape", [[2**63, 0], [0, 2**63], [2**64 - 1, 0], [0]])
def test_an_empty_tensor_of_absurd_shape_is_a_400(cancer, penguins, shape):
    error = refused(cancer.post("/v2/models/cancer/infer", json=matrix(shape, [])))
    assert "no values" in error and str(shape[0]) in error
    tensor = {"name": "bill_length_mm", "shape": shape, "datatype": "FP32"}
    body, headers = binary({**tensor, "parameters": {"binary_data_size": 0}}, b"")
    answer = penguins.post("/v2/models/penguins/infer", content=body, headers=headers)
    assert "no values" in refused(answer)
    text = {"name": "island", "shape": shape, "datatype": "BYTES"}
    body, headers = binary({**text, "parameters": {"binary_data_size": 0}}, b"")
    answer = penguins.post("/v2/models/penguins/infer", content=body, headers=headers)
    assert "no values" in refused(answer)


def test_an_output_the_model_does_not_have_is_a_400(regression, cancer):
    body = {**matrix([1, 30], [1.0] * 30), "outputs": [{"name": "probabilities"}]}
    error = refused(regression.post("/v2/models/reg/infer", json=body))
    assert "unknown output 'probabilities'" in error and "outputs: label" in error
    assert cancer.post("/v2/models/cancer/infer", json=body).status_code == 200
    body["outputs"] = [{"name": "label"}]
    answer = regression.post("/v2/models/reg/infer", json=body)
    assert answer.status_code == 200 and [o["name"] for o in answer.json()["outputs"]] == ["label"]


@pytest.mark.parametrize(
    "text",
    [b'"\\ud800"', b'"\\uDFFF"', b'"a\\udc80b"', b'"\xed\xa0\x80"'],
    ids=["escaped-high", "escaped-low", "escaped-inside", "encoded"],
)
@pytest.mark.parametrize("path", ["/predict", "/v2/models/penguins/infer"])
def test_a_lone_surrogate_in_a_body_with_a_nan_is_a_400(penguins, text, path):
    """orjson refuses a lone surrogate; the fallback parser (for NaN literals) must too."""
    row = json.dumps({**ROW, "bill_length_mm": float("nan")}).encode()
    row = row.replace(b'"Biscoe"', text)
    if path == "/predict":
        body = b'{"instances": [' + row + b"]}"
    else:
        values = json.loads(row.replace(text, b'"x"'))
        inputs = []
        for name, value in values.items():
            datatype = "BYTES" if isinstance(value, str) else "FP32"
            inputs.append({"name": name, "shape": [1], "datatype": datatype, "data": [value]})
        body = json.dumps({"inputs": inputs}).encode().replace(b'["x"]', b"[" + text + b"]")
    assert "not valid Unicode" in refused(penguins.post(path, content=body))


def test_a_valid_surrogate_pair_with_a_nan_is_accepted(penguins):
    row = json.dumps({**ROW, "bill_length_mm": float("nan"), "island": "\U0001f427"})
    answer = penguins.post("/predict", content=b'{"instances": [' + row.encode() + b"]}")
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_a_415_that_says_so(penguins, encoding):
    body = gzip.compress(json.dumps({"instances": [ROW]}).encode())
    headers = {"Content-Encoding": encoding}
    error = refused(penguins.post("/predict", content=body, headers=headers), 415)
    assert f"Content-Encoding {encoding!r}" in error and "uncompressed" in error
    plain = penguins.post("/predict", json={"instances": [ROW]}, headers={"Content-Encoding": ""})
    assert plain.status_code == 200
    ident = {"Content-Encoding": "identity"}
    assert penguins.post("/predict", json={"instances": [ROW]}, headers=ident).status_code == 200


def test_a_number_too_large_for_a_float_names_its_feature_and_row(penguins):
    huge = json.dumps({**ROW, "bill_length_mm": 7}).replace("7", "1" + "0" * 400)
    body = b'{"instances": [' + json.dumps(ROW).encode() + b", " + huge.encode() + b"]}"
    error = refused(penguins.post("/predict", content=body))
    assert "feature 'bill_length_mm'" in error and "at row 1" in error, error
    assert "1000000000" in error and len(error) < 400  # a prefix of the number, not all


def test_binary_data_size_without_the_binary_header_says_the_header_is_missing(cancer):
    tensor = {"name": "input", "shape": [1, 30], "datatype": "FP32"}
    body = {"inputs": [{**tensor, "parameters": {"binary_data_size": 120}}]}
    error = refused(cancer.post("/v2/models/cancer/infer", json=body))
    assert "no Inference-Header-Content-Length header" in error, error
    assert "has no 'data' list" in refused(
        cancer.post("/v2/models/cancer/infer", json=matrix([1], None))
    )


def test_a_model_answer_holding_nan_is_a_500_that_says_so_not_null_probabilities(cancer):
    width = 30  # the cancer features
    extreme = cancer.post("/v2/models/cancer/infer", json=matrix([1, width], [3.4e38] * width))
    assert extreme.status_code == 500, extreme.text
    assert "NaN or infinity in its probabilities for row 0" in extreme.json()["error"]
    fine = cancer.post("/v2/models/cancer/infer", json=matrix([1, width], [1.0] * width))
    assert fine.status_code == 200 and None not in fine.json()["outputs"][1]["data"]
