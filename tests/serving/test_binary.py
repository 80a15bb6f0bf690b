"""The binary tensor data extension, in process: the same answers as JSON, binary answers
on request, and a clear 400 for every malformed binary body (never a 5xx)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from pandas.api.types import is_numeric_dtype
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from shipml.serving.app import ModelServer
from shipml.serving.predictor import Predictor

ROWS = 6


def binary_request(tensors, *, outputs=None, parameters=None, extra: bytes = b""):
    """(body, header length) the way tritonclient builds them: the reference encoder of
    BYTES tensors is tritonclient's own serialize_byte_tensor."""
    inputs, blobs = [], []
    for name, datatype, array in tensors:
        blob = (
            serialize_byte_tensor(array).item()
            if datatype == "BYTES"
            else np.ascontiguousarray(array).tobytes()
        )
        inputs.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header: dict = {"inputs": inputs}
    if outputs is not None:
        header["outputs"] = outputs
    if parameters is not None:
        header["parameters"] = parameters
    head = json.dumps(header).encode()
    return head + b"".join(blobs) + extra, len(head)


def penguin_tensors(X):
    tensors = []
    for name in X.columns:
        column = X[name]
        if not is_numeric_dtype(column):
            values = np.asarray([["" if v != v else v] for v in column], dtype=object)
            tensors.append((name, "BYTES", values))
        else:
            tensors.append((name, "FP32", column.to_numpy(np.float32).reshape(-1, 1)))
    return tensors


def json_request(X):
    inputs = []
    for name in X.columns:
        column = X[name]
        data = [None if v != v else v for v in column.tolist()]
        datatype = "FP32" if is_numeric_dtype(column) else "BYTES"
        inputs.append({"name": name, "shape": [len(X), 1], "datatype": datatype, "data": data})
    return {"inputs": inputs}


def post(app, body, length=None, path="/v2/models/penguins/infer", headers=None):
    headers = dict(headers or {})
    if length is not None:
        headers["Inference-Header-Content-Length"] = str(length)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(path, content=body, headers=headers)

    import asyncio

    return asyncio.run(go())


def outputs_of(resp):
    """{output: array} of a JSON or binary V2 answer."""
    length = resp.headers.get("inference-header-content-length")
    if length is None:
        body, blob = resp.json(), b""
    else:
        body, blob = json.loads(resp.content[: int(length)]), resp.content[int(length) :]
    out, offset = {}, 0
    for tensor in body["outputs"]:
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is None:
            out[tensor["name"]] = np.asarray(tensor["data"])
            continue
        raw = blob[offset : offset + size]
        offset += size
        if tensor["datatype"] == "BYTES":
            out[tensor["name"]] = deserialize_bytes_tensor(raw).astype(str)
        else:
            out[tensor["name"]] = np.frombuffer(
                raw, np.float32 if tensor["datatype"] == "FP32" else np.int64
            )
    assert offset == len(blob)
    return out


@pytest.fixture(scope="module")
def app(penguins_package) -> ModelServer:
    server = ModelServer(Predictor.load(penguins_package.path, name="penguins"))
    server.warm_up()
    return server


@pytest.fixture(scope="module")
def rows(penguins_data):
    X, _ = penguins_data
    return X.iloc[:ROWS]  # rows 3 has missing values


def test_binary_inputs_and_outputs_answer_as_json_does(app, rows, penguins_package):
    assert rows.isna().any().any()
    reference = post(app, json.dumps(json_request(rows)).encode())
    body, length = binary_request(penguin_tensors(rows), parameters={"binary_data_output": True})
    resp = post(app, body, length)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/octet-stream"
    got, want = outputs_of(resp), outputs_of(reference)
    assert got["label"].tolist() == want["label"].tolist()
    assert got["label"].tolist() == penguins_package.predict(rows)[0].tolist()
    assert np.array_equal(
        got["probabilities"], want["probabilities"].astype(np.float32).reshape(-1)
    )


def test_json_inputs_may_ask_for_one_binary_output(app, rows):
    request = json_request(rows)
    request["outputs"] = [
        {"name": "label"},
        {"name": "probabilities", "parameters": {"binary_data": True}},
    ]
    resp = post(app, json.dumps(request).encode())
    length = int(resp.headers["inference-header-content-length"])
    header = json.loads(resp.content[:length])
    label, proba = header["outputs"]
    assert "data" in label and proba["parameters"] == {"binary_data_size": ROWS * 3 * 4}
    # binary_data_output for all, but one output overrides it
    request["parameters"] = {"binary_data_output": True}
    request["outputs"] = [{"name": "label", "parameters": {"binary_data": False}}]
    resp = post(app, json.dumps(request).encode())
    assert "inference-header-content-length" not in resp.headers
    assert resp.json()["outputs"][0]["data"] == outputs_of(resp)["label"].tolist()


def test_a_big_binary_request_is_parsed_in_the_worker_process(cancer_package, cancer_data):
    X, _ = cancer_data
    big = np.tile(X.to_numpy(np.float32), (10, 1))  # 5,690 rows: 683 KB of FP32
    app = ModelServer(Predictor.load(cancer_package.path, name="cancer"))
    app.warm_up()
    body, length = binary_request([("input", "FP32", big)], parameters={"binary_data_output": True})
    assert len(body) > app.off_loop_bytes
    try:
        resp = post(app, body, length, path="/v2/models/cancer/infer")
    finally:
        app.offload.close()
    assert resp.status_code == 200, resp.text
    assert app.offload._pool is None  # it was started (and closed above)
    labels = outputs_of(resp)["label"]
    assert labels.tolist() == cancer_package.predict(X)[0].tolist() * 10


def _mutated(rows, **change):
    tensors = penguin_tensors(rows)
    body, length = binary_request(tensors)
    header = json.loads(body[:length])
    blob = body[length:]
    for key, value in change.items():
        if key == "blob":
            blob = value(blob)
        else:
            value(header)
    head = json.dumps(header).encode()
    return head + blob, len(head)


def _set(index, key, value):
    def change(header):
        header["inputs"][index][key] = value

    return change


def _param(index, value):
    return _set(index, "parameters", {"binary_data_size": value})


HOSTILE = {
    "a size past the end": ({"header": _param(0, 10**9)}, "bytes of binary data are left"),
    "a negative size": ({"header": _param(1, -4)}, "binary_data_size -4"),
    "a size that is not a number": ({"header": _param(1, "24")}, "binary_data_size '24'"),
    "a boolean size": ({"header": _param(1, True)}, "binary_data_size True"),
    "bytes left over": ({"blob": lambda b: b + b"\0" * 7}, "7 bytes of binary data follow"),
    "a numeric size that does not fit the shape": (
        {"header": _set(1, "shape", [ROWS, 2])},
        "bytes of binary data, but shape",
    ),
    "an absurd shape": ({"header": _set(1, "shape", [10**18, 10**18])}, "needs"),
    "an unsupported datatype": ({"header": _set(1, "datatype", "BF16")}, "unsupported datatype"),
    "data beside binary data": ({"header": _set(1, "data", [1.0])}, "both 'data' and"),
    "a BYTES length running past its data": (
        {"blob": lambda b: b"\xff\xff\xff\x7f" + b[4:]},
        "runs past its binary data",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_malformed_binary_body_is_a_clear_400(app, rows, case):
    change, message = HOSTILE[case]
    body, length = _mutated(rows, **change)
    resp = post(app, body, length)
    assert resp.status_code == 400, (case, resp.text)
    assert message in resp.json()["error"], resp.json()["error"]
    assert len(resp.json()["error"]) < 1000


def test_more_malformed_binary_requests(app, rows):
    body, length = binary_request(penguin_tensors(rows))
    for header_value, message in [
        ("-1", "invalid Inference-Header-Content-Length"),
        ("12x", "invalid Inference-Header-Content-Length"),
        ("9" * 40, "invalid Inference-Header-Content-Length '9999"),
        (str(len(body) + 1), "is larger than the body"),
        ("3", "malformed JSON"),
    ]:
        resp = post(app, body, headers={"Inference-Header-Content-Length": header_value})
        assert resp.status_code == 400 and message in resp.json()["error"], resp.text
    resp = post(app, body, length, path="/predict")
    assert resp.status_code == 400 and "V2 inference only" in resp.json()["error"]
    # a non-UTF-8 category, a NaN where the model needs a value, an infinity
    text = binary_request([("island", "BYTES", np.asarray([b"\xff\xfe"], dtype=object))])
    assert "is not UTF-8 text" in post(app, *text).json()["error"]
    for value, message in [(np.inf, "non-finite"), (-np.inf, "non-finite")]:
        tensors = penguin_tensors(rows.iloc[:1])
        tensors[1] = (tensors[1][0], "FP32", np.asarray([[value]], dtype=np.float32))
        resp = post(app, *binary_request(tensors))
        assert resp.status_code == 400 and message in resp.json()["error"], resp.text
    flags = binary_request(penguin_tensors(rows), parameters={"binary_data_output": "yes"})
    assert "must be true or false" in post(app, *flags).json()["error"]


def test_a_binary_body_over_the_limit_is_a_413_before_it_is_read(penguins_package, rows):
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins"), max_body_bytes=4096)
    app.warm_up()
    big = np.zeros((2000, 1), np.float32)
    tensors = [(n, "FP32", big) for n in ("bill_length_mm", "bill_depth_mm")]
    resp = post(app, *binary_request(tensors))
    assert resp.status_code == 413 and "larger than the limit" in resp.json()["error"]
