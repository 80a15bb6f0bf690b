"""Thousands of generated hostile requests to every endpoint of the model server and of the
gateway in front of it: never a 5xx, and memory stays bounded."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shipml.rollout import Gateway, TrafficPolicy, Variant
from shipml.serving.app import ModelServer
from shipml.serving.predictor import Predictor
from tests.serving.fuzz import Endpoint, fuzz, fuzz_grpc
from tests.serving.hostile import ROW, rss_mb, serve

NUMERIC = [k for k, v in ROW.items() if isinstance(v, float)]
V2 = {
    "id": "r1",
    "inputs": [
        {
            "name": k,
            "shape": [2, 1],
            "datatype": "FP32" if isinstance(v, float) else "BYTES",
            "data": [v, None if k != "island" else "Dream"],
        }
        for k, v in ROW.items()
    ],
    "outputs": [{"name": "probabilities"}],
}
INVOCATIONS = (
    {"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())]}},
    {"dataframe_records": [ROW, {**ROW, "sex": None}]},
    {"instances": [ROW]},
    {"inputs": {k: [v] for k, v in ROW.items()}},
    {"inputs": [list(ROW.values())]},
)
PREDICT = ({"instances": [ROW, {**ROW, "bill_depth_mm": 0.5}]},)


def _binary_v2() -> tuple[dict, bytes]:
    """The V2 body as binary tensors (Inference-Header-Content-Length), outputs binary."""
    inputs, blobs = [], []
    for tensor in V2["inputs"]:
        if tensor["datatype"] == "BYTES":
            blob = b"".join(
                len(v.encode()).to_bytes(4, "little") + v.encode() for v in (tensor["data"][0], "")
            )
        else:
            blob = np.asarray([tensor["data"][0], np.nan], np.float32).tobytes()
        inputs.append(
            {
                **{k: v for k, v in tensor.items() if k != "data"},
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header = {"inputs": inputs, "parameters": {"binary_data_output": True}}
    return header, b"".join(blobs)


BINARY = (_binary_v2(),)


def server_endpoints(name: str) -> list[Endpoint]:
    gets = ["/", "/index.html", "/metrics", "/v2", "/v2/health/live", "/v2/health/ready"]
    gets += ["/openapi.json", "/docs"]
    gets += [f"/v2/models/{name}", f"/v2/models/{name}/ready", f"/v2/models/{name}/versions/1"]
    return [
        *(Endpoint("GET", path) for path in gets),
        Endpoint("POST", "/predict", PREDICT),
        Endpoint("POST", "/invocations", INVOCATIONS),
        Endpoint("POST", f"/v2/models/{name}/infer", (V2,), BINARY),
        Endpoint("POST", f"/v2/models/{name}/versions/1/infer", (V2,), BINARY),
    ]


def gateway_endpoints(name: str) -> list[Endpoint]:
    feedback = ({"request_id": "r1", "label": "Adelie"}, {"request_id": "x", "label": 1.0})
    return [
        *server_endpoints(name),
        Endpoint("GET", "/v1/rollout"),
        Endpoint("POST", "/v1/feedback", feedback),
        Endpoint("POST", "/v1/rollout/promote", ({"reason": "x"},)),
        Endpoint("POST", "/v1/rollout/rollback", ({"reason": "x"},)),
    ]


@pytest.fixture(scope="module")
def server(penguins_package) -> ModelServer:
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins"))
    app.warm_up()
    return app


def check(report, endpoints, at_least: int) -> None:
    assert report.sent >= at_least
    assert not report.failures, "\n".join(map(str, report.failures[:20]))
    assert len(report.per_endpoint) >= len(endpoints)  # every endpoint was hit
    assert report.statuses[200] > 0 and sum(report.statuses.values()) == report.sent


def test_the_model_server_survives_1200_hostile_requests(server):
    endpoints = server_endpoints("penguins")
    before = rss_mb()
    report = fuzz(server, endpoints, examples=1200)
    check(report, endpoints, 1200)
    assert rss_mb() - before < 100


def test_the_model_server_over_a_socket(server):
    endpoints = server_endpoints("penguins")
    with serve(server) as url:
        report = fuzz(url, endpoints, examples=200)
    check(report, endpoints, 200)


def test_the_gateway_survives_800_hostile_requests(penguins_package, server):
    challenger = ModelServer(Predictor.load(penguins_package.path, name="penguins"))
    challenger.warm_up()
    policy = TrafficPolicy(
        mode="shadow",
        champion=Variant("champion", app=server),
        challengers=[Variant("challenger", app=challenger)],
    )
    gateway = Gateway(policy, admin_token="secret-token", seed=1)
    endpoints = gateway_endpoints("penguins")
    before = rss_mb()
    with serve(gateway) as url:  # over a socket: the gateway starts with its lifespan
        report = fuzz(url, endpoints, examples=800)
    check(report, endpoints, 800)
    assert rss_mb() - before < 100
    assert asyncio.iscoroutinefunction(gateway.stop)


def test_the_grpc_service_survives_600_hostile_calls(penguins_package):
    from tritonclient.grpc import service_pb2 as pb

    from shipml.serving.server import ServeSpec, build_app

    app = build_app(ServeSpec(str(penguins_package.path), "penguins", grpc_port=0))
    valid = pb.ModelInferRequest(model_name="penguins", id="r1")
    for tensor in V2["inputs"]:
        values = tensor["data"]
        valid.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=[2, 1])
        if tensor["datatype"] == "BYTES":
            raw = b"".join(len(v).to_bytes(4, "little") + v for v in (values[0].encode(), b""))
        else:
            raw = np.asarray([values[0], np.nan], np.float32).tobytes()
        valid.raw_input_contents.append(raw)
    before = rss_mb()
    with serve(app):
        report = fuzz_grpc(f"127.0.0.1:{app.service.port}", valid, examples=600)
    assert not report.failures, "\n".join(map(str, report.failures[:20]))
    assert report.sent >= 600 and report.statuses["OK"] > 0
    assert report.statuses["INVALID_ARGUMENT"] > 100 and len(report.per_endpoint) == 5
    assert rss_mb() - before < 100
