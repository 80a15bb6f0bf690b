"""Real clients with their defaults against `shipml serve`: MLflow's own scoring-server
client and the bodies MLflow's scoring server reads on /invocations (JSON in every form,
CSV with and without a header), as a user of MLflow or SageMaker sends them; tritonclient
(HTTP and gRPC) beyond plain inference: its classification extension, the model
configuration; /metrics as Prometheus' own parser and promtool read it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from mlflow.utils.proto_json_utils import dump_input_data
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.serving.test_grpc import triton_inputs


def post(url: str, body: bytes | str, content_type: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": content_type} if content_type else {}
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(f"{url}/invocations", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def rows(penguins_data):
    X, _ = penguins_data
    return X.iloc[[0, 3, 100, 200, 300]]  # row 3 has missing values


@pytest.fixture(scope="module")
def penguins_server(servers) -> str:
    return servers[0]


def labels(package, rows) -> list:
    return package.predict(rows)[0].tolist()


def test_mlflows_scoring_client_waits_on_ping_and_scores(penguins_server, penguins_package, rows):
    """ScoringServerClient (what MLflow's own tooling drives a scoring server with) waits
    on /ping, then posts a DataFrame as dataframe_split (with its index, NaN literals) and
    params; SageMaker probes /ping too."""
    address = urlparse(penguins_server)
    client = ScoringServerClient(address.hostname, address.port)
    client.wait_server_ready(timeout=5)
    assert client.invoke(rows)["predictions"] == labels(penguins_package, rows)
    with_params = client.invoke(rows, params={"threshold": 0.5})
    assert with_params["predictions"] == labels(penguins_package, rows)
    for path in ("/ping", "/health"):
        with urllib.request.urlopen(f"{penguins_server}{path}", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == {"ready": True}


def test_every_json_form_of_mlflows_scoring_protocol(penguins_server, penguins_package, rows):
    want = labels(penguins_package, rows)
    records = json.loads(rows.to_json(orient="records"))
    columns = {c: json.loads(rows[c].to_json(orient="values")) for c in rows.columns}
    bodies = {
        "split": dump_input_data(rows),
        "records": json.dumps({"dataframe_records": records}),
        "instances": json.dumps({"instances": records}),
        "inputs": json.dumps({"inputs": records}),
        "inputs by column": json.dumps({"inputs": columns, "params": {"k": 1}}),
    }
    for form, body in bodies.items():
        for ctype in ("application/json", "application/json; charset=utf-8"):
            status, answer = post(penguins_server, body, ctype)
            assert (status, answer["predictions"]) == (200, want), (form, ctype)


def test_csv_bodies_with_and_without_a_header(penguins_server, penguins_package, rows):
    """text/csv as MLflow reads it (a header row, DataFrame.to_csv(index=False)), and
    without a header, the features in the signature's order (SageMaker's CSV)."""
    want = labels(penguins_package, rows)
    reordered = rows[list(reversed(rows.columns))]
    bodies = {
        "header": rows.to_csv(index=False),
        "reordered": reordered.to_csv(index=False),
        "no header": rows.to_csv(index=False, header=False),
        "byte order mark": "\ufeff" + rows.to_csv(index=False),
        "crlf": rows.to_csv(index=False, lineterminator="\r\n"),
    }
    for form, body in bodies.items():
        for ctype in ("text/csv", "text/csv; charset=utf-8", "TEXT/CSV;charset=UTF-8"):
            status, answer = post(penguins_server, body, ctype)
            assert (status, answer.get("predictions")) == (200, want), (form, ctype, answer)
    assert np.allclose(answer["probabilities"], penguins_package.predict(rows)[1], atol=1e-6)


def test_a_numeric_models_csv_matches_its_json(cancer_server, cancer_package, cancer_data):
    """Small bodies, and one over 256 KiB (parsed in the worker process)."""
    X, _ = cancer_data
    for rows in (X.iloc[:20], pd.concat([X] * 4)):
        want = cancer_package.predict(rows)[0].tolist()
        as_json = json.dumps({"inputs": rows.to_numpy().tolist()})
        for body in (rows.to_csv(index=False), rows.to_csv(index=False, header=False)):
            status, answer = post(cancer_server, body, "text/csv")
            assert (status, answer) == post(cancer_server, as_json, "application/json")
            assert answer["predictions"] == want


@pytest.mark.parametrize(
    ("body", "ctype", "status", "says"),
    [
        ("island,bill_length_mm\nBiscoe,long\n", "text/csv", 400, "cannot be read"),
        (",island\n0,Biscoe\n", "text/csv", 400, "index=False"),
        ("1,2,3\n", "text/csv", 400, "names no feature"),
        ("", "text/csv", 400, "names no feature"),
        ("island,sex\nBiscoe,male\n", "text/csv", 400, "missing feature"),
        (
            "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year,x\n"
            "Biscoe,1,2,3,4,male,2008,9\n",
            "text/csv",
            400,
            "unknown feature 'x'",
        ),
        (
            "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n"
            "Biscoe,inf,2,3,4,male,2008\n",
            "text/csv",
            400,
            "non-finite",
        ),
        (b"\xff\xfei\x00", "text/csv", 400, "cannot be read"),
        (b"PAR1\x00\x00", "application/vnd.apache.parquet", 415, "Parquet"),
        ('{"instances": []}', "application/json; charset=latin-1", 415, "UTF-8"),
        ("island\nBiscoe\n", "text/csv; charset=utf-16", 415, "UTF-8"),
    ],
)
def test_bodies_mlflow_would_refuse_are_clear_4xx(penguins_server, body, ctype, status, says):
    got, answer = post(penguins_server, body, ctype)
    assert got == status and says in answer["error"], answer


def test_tritonclients_class_count_gets_the_top_classes(servers, penguins_package, rows):
    """InferRequestedOutput(..., class_count=K): Triton's classification extension, a BYTES
    [rows, K] of "<probability>:<index>:<label>", highest first (it was ignored: the whole
    probabilities tensor came back, in a shape the caller did not ask for)."""
    url, address = servers
    _, proba = penguins_package.predict(rows)
    classes = penguins_package.signature.classes
    clients = [
        (triton_http.InferenceServerClient(url.removeprefix("http://")), triton_http, True),
        (triton_http.InferenceServerClient(url.removeprefix("http://")), triton_http, False),
        (triton_grpc.InferenceServerClient(address), triton_grpc, True),
    ]
    for client, module, binary in clients:
        assert "classification" in client.get_server_metadata(**_json(module))["extensions"]
        wanted = module.InferRequestedOutput("probabilities", class_count=2)
        if module is triton_http:
            wanted = module.InferRequestedOutput("probabilities", binary, class_count=2)
        result = client.infer("penguins", triton_inputs(module, rows), outputs=[wanted])
        top = result.as_numpy("probabilities")
        assert top.shape == (len(rows), 2)
        for r, row in enumerate(top.tolist()):
            (first, i, label), (second, j, _) = (_split(v) for v in row)
            assert label == classes[i] and i == int(np.argmax(proba[r]))
            assert first >= second and abs(first - proba[r][i]) < 1e-5
            assert abs(second - proba[r][j]) < 1e-5
        with pytest.raises(InferenceServerException, match="cannot be classified"):
            client.infer(
                "penguins",
                triton_inputs(module, rows),
                outputs=[module.InferRequestedOutput("label", class_count=1)],
            )


def _json(module) -> dict:
    return {"as_json": True} if module is triton_grpc else {}


def _split(value: bytes | str) -> tuple[float, int, str]:
    """A binary BYTES element comes as bytes, a JSON one as text."""
    text = value.decode() if isinstance(value, bytes) else value
    probability, index, label = text.split(":")
    return float(probability), int(index), label


def test_tritonclients_model_config_describes_the_model(servers):
    """get_model_config (Triton's GET /v2/models/NAME[/versions/V]/config) was a 404; it
    is Triton's configuration of the model: rows per model run, dims without the batch."""
    url, _ = servers
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    meta = client.get_model_metadata("penguins")
    for version in ("", "1"):
        config = client.get_model_config("penguins", version)
        assert (config["name"], config["max_batch_size"]) == ("penguins", 64)
        assert config["platform"] == meta["platform"] == "onnxruntime_onnx"
        assert [(i["name"], i["dims"]) for i in config["input"]] == [
            (i["name"], i["shape"][1:]) for i in meta["inputs"]
        ]
        types = {i["name"]: i["data_type"] for i in config["input"]}
        assert (types["island"], types["bill_length_mm"]) == ("TYPE_STRING", "TYPE_FP32")
        outputs = {o["name"]: o for o in config["output"]}
        assert outputs["label"]["data_type"] == "TYPE_STRING"
        assert outputs["probabilities"]["dims"] == [3]
    with pytest.raises(InferenceServerException, match="no version '2'"):
        client.get_model_config("penguins", "2")


def test_metrics_after_every_kind_of_request_pass_prometheus_own_checks(servers, rows):
    """/metrics after HTTP, gRPC, CSV and refused requests: read by prometheus_client's
    own parser, and by `promtool check metrics` (Prometheus' linter) where it is
    installed."""
    url, address = servers
    post(url, rows.to_csv(index=False), "text/csv")
    post(url, "{", "application/json")
    triton_grpc.InferenceServerClient(address).infer("penguins", triton_inputs(triton_grpc, rows))
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        assert resp.headers["content-type"].startswith("text/plain")
        text = resp.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"shipml_requests", "shipml_request_duration_seconds"} <= set(families)
    codes = {(s.labels["protocol"], s.labels["code"]) for s in families["shipml_requests"].samples}
    assert {("invocations", "200"), ("invocations", "400"), ("grpc", "200")} <= codes
    for family in families.values():
        assert family.documentation and family.type in ("counter", "gauge", "histogram")
    tool = shutil.which("promtool")
    if tool is None:
        assert not os.environ.get("CI"), "CI needs promtool (scripts/prometheus.sh)"
        return
    checked = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_two_formats_in_one_body_are_refused_as_mlflow_refuses_them(penguins_server, rows):
    """{"instances": A, "inputs": B} scored A and dropped B without a word."""
    records = json.loads(rows.to_json(orient="records"))
    body = json.dumps({"inputs": records[:1], "instances": records})
    status, answer = post(penguins_server, body, "application/json")
    assert status == 400 and "instances and inputs" in answer["error"], answer
