"""Tensor features served through V2: an MLP over 8×8 images (scikit-learn's digits),
exported as torch.onnx.export would write it (an image input [rows, 1, 8, 8], logits
out; built with onnx.helper, no PyTorch), imported into a project with `shipml models
import`, and served by the project's model server (audit log and live metrics on, as by
default). A `[rows, 1, 8, 8]` tensor (or each image flattened to 64 values) is checked
against the signature's shape and fed to the graph; anything else is a clear 400."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from shipml.config import load_config
from shipml.project.serving import serve_spec
from shipml.serving.server import build_app
from shipml.templates import create_project
from tests.model.test_imported import mlp_graph


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A project with the digits MLP imported as digits@challenger, and its hold-out."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.2, random_state=0)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 1e-3
    mlp = MLPClassifier((32,), max_iter=300, random_state=0)
    mlp.fit((X_train - mean) / std, y_train.astype(str))
    folder = tmp_path_factory.mktemp("digits")
    (folder / "model.onnx").write_bytes(mlp_graph(mlp, mean, std, image=True))
    signature = {
        "features": [{"name": "image", "type": "tensor", "shape": [1, 8, 8]}],
        "task": "classification",
        "classes": [str(c) for c in mlp.classes_],
        "outputs": {"logits": "logits"},
    }
    (folder / "signature.json").write_text(json.dumps(signature))
    valid = pd.DataFrame({"image": [row.reshape(1, 8, 8).tolist() for row in X_valid]})
    valid["digit"] = y_valid.astype(str)
    valid.to_parquet(folder / "rows.parquet")

    project = create_project(folder / "project", "digits", git=False)
    from shipml.project.importing import import_model

    import_model(
        load_config(project),
        folder / "model.onnx",
        folder / "signature.json",
        folder / "rows.parquet",
        labels="digit",
        alias="challenger",
    )
    return project, valid


@pytest.fixture(scope="module")
def client(digits: tuple[Path, pd.DataFrame]) -> Any:
    project, _ = digits
    app = build_app(serve_spec(load_config(project), "digits@challenger"))
    with TestClient(app) as c:
        yield c


def infer(client: Any, inputs: list[dict[str, Any]]) -> Any:
    return client.post("/v2/models/digits/infer", json={"inputs": inputs})


def images(valid: pd.DataFrame, n: int) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float32) for v in valid["image"][:n]])


def test_metadata_describes_the_tensor_input(client):
    meta = client.get("/v2/models/digits").json()
    assert meta["inputs"] == [
        {
            "name": "image",
            "datatype": "FP32",
            "shape": [-1, 1, 8, 8],
            "parameters": {"nullable": False, "categories": None},
        }
    ]


def test_a_batch_of_images_is_answered_as_the_package_predicts(client, digits):
    project, valid = digits
    batch = images(valid, 5)
    from shipml.model import ModelPackage

    package = ModelPackage.load(Path(serve_spec(load_config(project), "digits@challenger").package))
    expected, proba = package.predict(pd.DataFrame({"image": list(batch)}))
    assert (expected == valid["digit"][:5].to_numpy()).mean() >= 0.8  # a real model
    nested = infer(
        client,
        [{"name": "image", "shape": [5, 1, 8, 8], "datatype": "FP32", "data": batch.tolist()}],
    )
    assert nested.status_code == 200, nested.text
    outputs = {o["name"]: o for o in nested.json()["outputs"]}
    assert outputs["label"]["data"] == [str(v) for v in expected]
    assert np.allclose(np.reshape(outputs["probabilities"]["data"], (5, 10)), proba, atol=1e-5)
    flat = infer(
        client,
        [{"name": "image", "shape": [5, 64], "datatype": "FP64", "data": batch.ravel().tolist()}],
    )
    assert flat.status_code == 200 and flat.json()["outputs"][0]["data"] == outputs["label"]["data"]
    one = client.post("/predict", json={"instances": [{"image": batch[0].tolist()}]})
    assert one.status_code == 200 and one.json()["predictions"][0]["label"] == str(expected[0])


def test_images_may_come_as_binary_tensors_as_tritonclient_sends_them(client, digits):
    """The binary tensor extension (tritonclient's default, and every gRPC call) carries a
    tensor feature as raw bytes: the same answer as JSON."""
    _, valid = digits
    batch = images(valid, 3)
    tensor = {"name": "image", "shape": [3, 1, 8, 8], "datatype": "FP16"}
    blob = batch.astype(np.float16).tobytes()
    head = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(blob)}}]})
    headers = {"Inference-Header-Content-Length": str(len(head))}
    answer = client.post("/v2/models/digits/infer", content=head.encode() + blob, headers=headers)
    assert answer.status_code == 200, answer.text
    data = batch.astype(np.float16).astype(float).tolist()
    as_json = infer(client, [{**tensor, "data": data}])
    assert answer.json()["outputs"][0] == as_json.json()["outputs"][0]


def test_images_over_grpc_as_tritonclient_sends_them(digits):
    """gRPC calls reach the app as binary tensors: an image batch answers as over HTTP."""
    import dataclasses

    import tritonclient.grpc as triton

    from tests.serving.hostile import serve

    project, valid = digits
    spec = serve_spec(load_config(project), "digits@challenger")
    app = build_app(dataclasses.replace(spec, grpc_port=0))
    batch = images(valid, 4)
    with serve(app) as url:
        image = triton.InferInput("image", [4, 1, 8, 8], "FP32")
        image.set_data_from_numpy(batch)
        client = triton.InferenceServerClient(f"127.0.0.1:{app.service.port}")
        labels = client.infer("digits", [image]).as_numpy("label").astype(str).tolist()
        client.close()
        import httpx

        body = {"inputs": [{"name": "image", "shape": [4, 1, 8, 8], "datatype": "FP32"}]}
        body["inputs"][0]["data"] = batch.tolist()
        answer = httpx.post(f"{url}/v2/models/digits/infer", json=body).json()
    assert labels == answer["outputs"][0]["data"]


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"shape": [2, 8, 8], "data": [0.0] * 128}, "expected [rows, 1, 8, 8]"),
        ({"shape": [1, 1, 8, 8, 1], "data": [0.0] * 64}, "invalid shape"),
        ({"shape": [64], "data": [0.0] * 64}, "invalid shape"),
        ({"shape": [1, 1, 8, 8], "data": [0.0] * 63}, "needs 64"),
        ({"shape": [1, 63], "data": [0.0] * 63}, "expected [rows, 1, 8, 8]"),
        ({"shape": [1, 1, 8, 8], "data": ["0"] * 64}, "expects numbers"),
        ({"shape": [1, 1, 8, 8], "data": [True] * 64}, "expects numbers"),
        ({"shape": [1, 1, 8, 8], "data": [None] * 64}, "finite"),
        ({"shape": [1, 1, 8, 8], "data": [1e39] * 64}, "finite"),
        ({"shape": [1, 1, 8, 8], "datatype": "BYTES", "data": ["x"] * 64}, "tensor of numbers"),
        ({"shape": [1, 1, 8, 8], "data": [[[[[[[[[[0.0]]]]]]]]]]}, "nested too deeply"),
        ({"shape": [1, "8", 8, 8], "data": [0.0] * 64}, "invalid shape"),
        ({"shape": [1, 1, 8, 8], "data": {"0": 1}}, "no 'data' list"),
        ({"shape": [0, 1, 8, 8], "data": []}, "no rows"),
        ({"shape": [2**63, 1, 8, 0], "data": []}, "no rows"),
        ({"shape": [1, 1, 8, 8], "datatype": ["FP32"], "data": [0.0] * 64}, "tensor of numbers"),
    ],
)
def test_a_tensor_that_does_not_fit_the_signature_is_a_clear_400(client, tensor, message):
    body = {"name": "image", "datatype": "FP32", **tensor}
    answer = infer(client, [body])
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


def test_images_of_rows_sent_another_way_are_refused_too(client):
    ragged = client.post("/predict", json={"instances": [{"image": [[1.0, 2.0], [3.0]]}]})
    assert ragged.status_code == 400 and "image" in ragged.json()["error"]
    scalar = client.post("/predict", json={"instances": [{"image": 3.0}]})
    assert scalar.status_code == 400 and "expected [rows, 1, 8, 8]" in scalar.json()["error"]
    nan = client.post(
        "/v2/models/digits/infer",
        content=b'{"inputs": [{"name": "image", "shape": [1, 64], "datatype": "FP32", "data": ['
        + b", ".join([b"NaN"] * 64)
        + b"]}]}",
        headers={"Content-Type": "application/json"},
    )
    assert nan.status_code == 400 and "finite" in nan.json()["error"]
    huge = infer(
        client,
        [{"name": "image", "shape": [20_000, 64], "datatype": "FP32", "data": [0.5] * 1_280_000}],
    )
    assert huge.status_code in (200, 413)  # within or over the body limit, never a 5xx
    still = infer(
        client, [{"name": "image", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]
    )
    assert still.status_code == 200
