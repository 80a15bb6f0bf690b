"""The model server in process (Starlette's test client drives the ASGI app)."""

from typing import Any

import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from shipml.model import model_input
from shipml.serving import ModelServer, Predictor
from tests.serving.conftest import penguins_model


@pytest.fixture
def client(penguins_package):
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins", version="3"))
    with TestClient(app) as c:
        yield c


@pytest.fixture
def rows(penguins_data):
    X, _ = penguins_data
    return X.iloc[[0, 3, 100]]  # row 3 has missing values


def v2_body(rows, **extra):
    inputs = []
    for name in rows.columns:
        col = rows[name]
        if col.dtype == object or str(col.dtype) in ("str", "string"):
            data = [None if v != v else v for v in col.tolist()]
            inputs.append(
                {"name": name, "shape": [len(rows), 1], "datatype": "BYTES", "data": data}
            )
        else:
            data = [None if np.isnan(v) else float(v) for v in col.astype(float).tolist()]
            inputs.append({"name": name, "shape": [len(rows)], "datatype": "FP64", "data": data})
    return {"inputs": inputs, **extra}


def expected(package, rows):
    labels, proba = package.predict(rows)
    return labels.tolist(), proba


def test_health_metadata_and_readiness(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "shipml"
    meta = client.get("/v2/models/penguins").json()
    assert meta["versions"] == ["3"]
    assert {i["name"]: i["datatype"] for i in meta["inputs"]}["island"] == "BYTES"
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert client.get("/v2/models/penguins/versions/3").status_code == 200
    assert client.get("/v2/models/penguins/ready").json() == {"name": "penguins", "ready": True}
    assert client.get("/v2/models/other").status_code == 404
    assert client.get("/v2/models/penguins/versions/9/ready").status_code == 404


def test_v2_infer_matches_the_model(client, penguins_package, rows):
    resp = client.post("/v2/models/penguins/infer", json=v2_body(rows, id="req-7"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == "req-7" and body["model_version"] == "3"
    outs = {o["name"]: o for o in body["outputs"]}
    labels, proba = expected(penguins_package, rows)
    assert outs["label"]["data"] == labels and outs["label"]["datatype"] == "BYTES"
    assert outs["probabilities"]["shape"] == [3, 3]
    assert np.allclose(np.reshape(outs["probabilities"]["data"], (3, 3)), proba, atol=1e-6)
    only = client.post(
        "/v2/models/penguins/versions/3/infer", json=v2_body(rows, outputs=[{"name": "label"}])
    )
    assert [o["name"] for o in only.json()["outputs"]] == ["label"]


def test_mlflow_and_predict_bodies(client, penguins_package, rows):
    labels, proba = expected(penguins_package, rows)
    records = [
        {k: (None if v != v else v) for k, v in r.items()} for r in rows.to_dict(orient="records")
    ]
    split = {
        "columns": list(rows.columns),
        "data": [[None if v != v else v for v in r] for r in rows.values.tolist()],
    }
    bodies = [
        {"dataframe_split": split},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": {c: [r[c] for r in records] for c in rows.columns}},
    ]
    for body in bodies:
        resp = client.post("/invocations", json=body)
        assert resp.status_code == 200, (body, resp.text)
        assert resp.json()["predictions"] == labels
    resp = client.post("/predict", json={"instances": records})
    first = resp.json()["predictions"][0]
    assert first["label"] == labels[0]
    assert first["probabilities"]["Adelie"] == pytest.approx(float(proba[0][0]), abs=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b'{"inputs": []}', 400, "'inputs' must be a non-empty list"),
        (
            b'{"inputs": [{"name": "island", "shape": [1], "datatype": "BYTES",'
            b' "data": ["Mars"]}]}',
            400,
            "missing feature",
        ),
    ],
)
def test_errors_are_json_with_a_message(client, body, status, text):
    resp = client.post("/v2/models/penguins/infer", content=body)
    assert resp.status_code == status
    assert text in resp.json()["error"]


def test_unknown_category_and_unknown_model(client, rows, penguins_strict_package):
    body = v2_body(rows)
    for tensor in body["inputs"]:
        if tensor["name"] == "island":
            tensor["data"][1] = "Atlantis"
    # The default package's encoder handles unseen values: packaging recorded "accept".
    assert client.post("/v2/models/penguins/infer", json=body).status_code == 200
    meta = client.get("/v2/models/penguins").json()
    assert {i["name"]: i["parameters"].get("unseen") for i in meta["inputs"]}["island"] == "accept"
    strict = ModelServer(Predictor.load(penguins_strict_package.path, name="penguins"))
    with TestClient(strict) as c:
        resp = c.post("/v2/models/penguins/infer", json=body)
        assert resp.status_code == 400
        assert "unknown category 'Atlantis' at row 1" in resp.json()["error"]
        meta = c.get("/v2/models/penguins").json()
        assert {i["name"]: i["parameters"].get("unseen") for i in meta["inputs"]}["island"] == (
            "error"
        )
    assert client.post("/v2/models/nope/infer", json=v2_body(rows)).status_code == 404


def test_body_too_large(penguins_package):
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins"), max_body_bytes=2048)
    with TestClient(app) as c:
        resp = c.post("/predict", content=b"x" * 5000)
        assert resp.status_code == 413 and "larger than the limit" in resp.json()["error"]


def test_request_id_echoed_or_generated(client, rows):
    resp = client.post(
        "/v2/models/penguins/infer", json=v2_body(rows), headers={"X-Request-ID": "abc-123"}
    )
    assert resp.headers["x-request-id"] == "abc-123"
    a = client.get("/v2").headers["x-request-id"]
    b = client.get("/v2").headers["x-request-id"]
    assert a and b and a != b


def test_metrics_are_prometheus_text_with_low_cardinality(client, rows):
    client.post("/v2/models/penguins/infer", json=v2_body(rows), headers={"X-Request-ID": "zz"})
    client.post("/v2/models/penguins/infer", content=b"{")
    text = client.get("/metrics").text
    assert (
        'shipml_requests_total{code="200",model="penguins",protocol="v2",version="3"} 1.0' in text
    )
    assert 'code="400"' in text
    assert "shipml_request_duration_seconds_bucket" in text
    assert "shipml_batch_size_rows_count" in text
    assert "shipml_requests_in_flight" in text
    assert 'shipml_model_info{model="penguins",onnx_sha256="' in text
    assert 'shipml_predictions_total{class="' in text
    assert "zz" not in text  # no request ids in labels


def test_matrix_input_for_numeric_models(cancer_package, cancer_data):
    X, _ = cancer_data
    app = ModelServer(Predictor.load(cancer_package.path, name="cancer"))
    with TestClient(app) as c:
        data = X.iloc[:4].to_numpy().tolist()
        resp = c.post(
            "/v2/models/cancer/infer",
            json={
                "inputs": [{"name": "input", "shape": [4, 30], "datatype": "FP32", "data": data}]
            },
        )
        assert resp.status_code == 200, resp.text
        labels, _ = cancer_package.predict(X.iloc[:4])
        assert resp.json()["outputs"][0]["data"] == labels.tolist()
        assert resp.json()["outputs"][0]["datatype"] == "INT64"


def test_not_ready_until_warm_up(penguins_package):
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins"))
    assert not app.ready  # no lifespan startup yet
    client = TestClient(app)  # without the context manager: no lifespan
    assert client.get("/v2/health/ready").status_code == 503
    app.warm_up()
    assert client.get("/v2/health/ready").status_code == 200


def test_in_process_predictions_match_sklearn(penguins_package, penguins_data):
    X, y = penguins_data
    model = penguins_model(X, y)  # the same fit (random_state=0) as the package's
    labels, proba = penguins_package.predict(X)
    assert list(labels) == list(model.predict(model_input(X)))
    assert proba is not None
    np.testing.assert_allclose(proba, model.predict_proba(model_input(X)), atol=1e-4)


def test_regression_answers_are_not_truncated(tmp_path, cancer_data):
    from sklearn.linear_model import LinearRegression

    from shipml.model import build_package

    X, y = cancer_data  # an integer target, but a regressor: no classes
    reg = LinearRegression().fit(model_input(X), y)
    pkg = build_package(reg, X, y, path=tmp_path / "reg")
    assert pkg.signature.task == "regression" and pkg.signature.label_type == "float"
    app = ModelServer(Predictor.load(pkg.path, name="reg"))
    with TestClient(app) as c:
        meta = c.get("/v2/models/reg").json()
        assert meta["outputs"] == [{"name": "label", "datatype": "FP32", "shape": [-1]}]
        resp = c.post(
            "/v2/models/reg/infer",
            json={
                "inputs": [
                    {
                        "name": "input",
                        "shape": [3, 30],
                        "datatype": "FP32",
                        "data": X.iloc[:3].to_numpy().tolist(),
                    }
                ]
            },
        )
        out = resp.json()["outputs"][0]
        assert out["datatype"] == "FP32"
        assert np.allclose(out["data"], reg.predict(model_input(X.iloc[:3])), atol=1e-4)
        assert "shipml_predictions_total{" not in c.get("/metrics").text  # no per-value series


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"instances": [{"bill_length_mm": 1' + b"0" * 400 + b"}]}",
    ],
    ids=["deep-nesting", "huge-number"],
)
def test_pathological_json_is_a_400(client, body):
    for path in ("/invocations", "/predict", "/v2/models/penguins/infer"):
        resp = client.post(path, content=body)
        assert resp.status_code == 400, (path, resp.text)


def test_health_is_answered_while_a_10_mb_request_is_scored(penguins_package, rows):
    """The big batch is scored off the event loop: the scoring is held until a health check
    has been answered, which can only happen if the loop is free meanwhile."""
    import threading

    import httpx

    from tests.serving.hostile import serve

    app = ModelServer(Predictor.load(penguins_package.path, name="penguins"))
    scoring, answered = threading.Event(), threading.Event()
    run = app.predictor.run

    def held_run(feeds):
        if len(next(iter(feeds.values()))) > 10_000:  # the big batch, not the warm-up
            scoring.set()
            answered.wait(timeout=20)  # released by the health check (never, if blocked)
        return run(feeds)

    app.predictor.run = held_run
    record = {
        k: (None if v != v else getattr(v, "item", lambda v=v: v)())
        for k, v in rows.iloc[0].items()
    }
    body = orjson.dumps({"instances": [record] * 75_000})
    assert len(body) > 10_000_000
    big: dict[str, Any] = {}
    with serve(app) as url:

        def send_big() -> None:
            resp = httpx.post(f"{url}/predict", content=body, timeout=60)
            big["status"], big["rows"] = resp.status_code, len(resp.json()["predictions"])

        thread = threading.Thread(target=send_big)
        thread.start()
        assert scoring.wait(timeout=60)
        health = httpx.get(f"{url}/v2/health/ready", timeout=20)
        in_flight = "status" not in big  # the big request has not been answered yet
        answered.set()
        thread.join(timeout=60)
    assert health.status_code == 200 and in_flight
    assert big == {"status": 200, "rows": 75_000}


def test_big_bodies_are_validated_like_small_ones(penguins_strict_package, rows):
    """Bodies over 256 KiB are parsed and validated in a worker process: same answers,
    same errors."""
    app = ModelServer(Predictor.load(penguins_strict_package.path, name="penguins"))
    record = {
        k: (None if v != v else getattr(v, "item", lambda v=v: v)())
        for k, v in rows.iloc[0].items()
    }
    many = [record] * 3000
    assert len(orjson.dumps({"instances": many})) > app.off_loop_bytes
    with TestClient(app) as c:
        ok = c.post("/predict", content=orjson.dumps({"instances": many}))
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 3000
        small = c.post("/predict", content=orjson.dumps({"instances": many[:1]}))
        assert ok.json()["predictions"][0] == small.json()["predictions"][0]
        bad = [*many[:2999], {**record, "island": "Atlantis"}]
        resp = c.post("/predict", content=orjson.dumps({"instances": bad}))
        assert resp.status_code == 400
        assert "unknown category 'Atlantis' at row 2999" in resp.json()["error"]
        text = orjson.dumps({"instances": many}).replace(b"39.1", b"Infinity", 1)
        resp = c.post("/predict", content=text)
        assert resp.status_code == 400 and "non-finite" in resp.json()["error"]
        resp = c.post("/predict", content=b"[" * 300_000)
        assert resp.status_code == 400 and "malformed JSON" in resp.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/penguins/x/y/z/infer",
        "/v2/models/penguins/versions/1/x/infer",
        "/v2/models/penguins//infer",
        "/v2/models/penguins/infer/",
        "/predict/",
    ],
)
def test_routes_are_exact(client, rows, path):
    resp = client.post(path, json=v2_body(rows))
    assert resp.status_code == 404 and "no such endpoint" in resp.json()["error"]


def test_an_error_quotes_only_a_prefix_of_a_huge_value(client, rows):
    body = v2_body(rows)
    numeric = next(t for t in body["inputs"] if t["datatype"] != "BYTES")
    numeric["data"][0] = "A" * 5_000_000
    resp = client.post("/v2/models/penguins/infer", json=body)
    assert resp.status_code == 400 and len(resp.content) < 2000
    assert "expects numbers; got 'AAAA" in resp.json()["error"]


def test_request_durations_are_the_requests_own(client, rows):
    """The duration observed is the request's wall time (the model's timing, recorded for
    traces, once replaced the start time: every duration came out about -1.8e18 s)."""
    import re
    import time

    t0 = time.perf_counter()
    for _ in range(3):
        assert client.post("/v2/models/penguins/infer", json=v2_body(rows)).status_code == 200
    elapsed = time.perf_counter() - t0
    text = client.get("/metrics").text
    [total] = re.findall(
        r'shipml_request_duration_seconds_sum\{[^}]*protocol="v2"[^}]*\} (\S+)', text
    )
    assert 0.0 < float(total) <= elapsed


def test_a_model_not_ready_yet_says_so_in_its_status(penguins_package):
    """tritonclient's is_model_ready reads only the status (200: ready), as the V2 spec
    has it: before the warm-up, the model's ready path was a 200 with "ready": false."""
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins", version="3"))
    client = TestClient(app)  # no lifespan: no warm-up, not ready
    for path in ("/v2/models/penguins/ready", "/v2/models/penguins/versions/3/ready"):
        answer = client.get(path)
        assert (answer.status_code, answer.json()["ready"]) == (503, False), path
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/ping").status_code == 503


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/predict", 405, "POST"),
        ("GET", "/v2/models/penguins/infer", 405, "POST"),
        ("PUT", "/v2/models/penguins/versions/3/infer", 405, "POST"),
        ("POST", "/v2/health/ready", 405, "GET, HEAD"),
        ("POST", "/v2/models/penguins", 405, "GET, HEAD"),
        ("DELETE", "/metrics", 405, "GET, HEAD"),
        ("PUT", "/nowhere", 404, None),
        ("POST", "/nowhere", 404, None),
    ],
)
def test_a_wrong_method_is_a_405_naming_the_right_one(client, method, path, status, allow):
    """`curl -X GET .../infer` was a 404 "no such endpoint", as if the path were wrong;
    a 405 says which method the path takes, in the Allow header HTTP requires."""
    answer = client.request(method, path)
    assert answer.status_code == status and "error" in answer.json()
    assert answer.headers.get("allow") == allow
