"""The model server's OpenAPI 3 document (``/openapi.json``), generated from the model's
signature when the server loads, and the ``/docs`` page that reads it.

The document describes this server as it is: the V2 REST paths of the Open Inference
Protocol (health, metadata, inference in JSON and in binary tensor form), MLflow's
``/invocations``, ``/predict``, ``/metrics`` and the demo page, with the model's own
features in the request schemas: each feature's type, whether it may be missing, its
categories (an ``enum`` where unseen categories are refused), the float32 range of its
numbers. A request that matches a schema can still be refused by the validator for what a
schema cannot say (tensors of different row counts, a shape that does not fit its data);
every refusal is a documented 4xx with an ``{"error": ...}`` body.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from shipml.model.signature import Signature
from shipml.serving.schemas import component_schemas, example_value, ref

ERRORS = {
    "400": "the request does not match the protocol or the model's signature",
    "404": "no such model or version here",
    "408": "the request did not arrive in time",
    "409": "this X-Request-ID was already answered (audited servers)",
    "413": "the body is larger than [serving] max_body_bytes",
    "415": "the body is compressed (Content-Encoding): send it uncompressed",
    "500": "the model failed on input that passed validation",
    "503": "the server holds [serving] max_buffered_bytes of request bodies: retry shortly",
}


def _json_body(schema: str, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": ref(schema)}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _answers(ok: str | None, *errors: str, content: dict[str, Any] | None = None) -> Any:
    answers: dict[str, Any] = {}
    if ok is not None or content is not None:
        answers["200"] = {"description": "OK", "content": content or _json_body(ok or "")}
    for code in errors:
        answers[code] = {"description": ERRORS[code], "content": _json_body("Error")}
    return answers


def _model_params(name: str, version: str, versioned: bool) -> list[dict[str, Any]]:
    params = [
        {
            "name": "model_name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": [name]},
        }
    ]
    if versioned:
        params.append(
            {
                "name": "model_version",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": [version]},
            }
        )
    return params


def _infer(example: dict[str, Any], versioned: bool, name: str, version: str) -> Any:
    binary = {
        "schema": {"type": "string", "format": "binary"},
        "x-shipml-extension": "binary_tensor_data",
    }
    return {
        "post": {
            "operationId": "v2_infer_version" if versioned else "v2_infer",
            "summary": "V2 inference",
            "description": "One tensor per feature (BYTES for text, a numeric datatype for "
            "numbers); answers the label and class probabilities. Binary tensor data "
            "extension: a JSON header of Inference-Header-Content-Length bytes, then each "
            "input's raw little-endian bytes (binary_data_size in its parameters); outputs "
            "come back binary when binary_data_output (request) or binary_data (output) "
            "is true.",
            "parameters": [
                *_model_params(name, version, versioned),
                {
                    "name": "Inference-Header-Content-Length",
                    "in": "header",
                    "required": False,
                    "description": "binary tensor data: the JSON header's length in bytes",
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    **_json_body("V2InferenceRequest", example),
                    "application/octet-stream": binary,
                },
            },
            "responses": _answers(
                None,
                "400",
                "404",
                "409",
                "413",
                "415",
                "500",
                content={
                    **_json_body("V2InferenceResponse"),
                    "application/octet-stream": binary,
                },
            ),
        }
    }


def _get(operation: str, summary: str, ok: Any, *errors: str, **extra: Any) -> Any:
    """A GET operation answering ``ok`` (its 200 content) or the documented ``errors``."""
    answers = {"200": {"description": "OK", **({"content": ok} if ok else {})}}
    for code in errors:
        answers[code] = {"description": ERRORS[code], "content": _json_body("Error")}
    return {"get": {"operationId": operation, "summary": summary, "responses": answers, **extra}}


def _text(kind: str) -> dict[str, Any]:
    return {kind: {"schema": {"type": "string"}}}


def _flag(key: str) -> dict[str, Any]:
    """``{"<key>": true|false}`` (and the model's name, for a model's readiness)."""
    properties = {"name": {"type": "string"}, key: {"type": "boolean"}}
    return {
        "application/json": {
            "schema": {"type": "object", "required": [key], "properties": properties}
        }
    }


def _renamed(path: dict[str, Any], operation: str) -> dict[str, Any]:
    """``path``'s GET under another operationId (the same answers)."""
    return {"get": {**path["get"], "operationId": operation}}


def _v2_paths(name: str, version: str, example: dict[str, Any]) -> dict[str, Any]:
    ready = _flag("ready")
    meta = _json_body("ModelMetadata")
    config = {"application/json": {"schema": {"type": "object", "required": ["name", "input"]}}}
    model, versioned = _model_params(name, version, False), _model_params(name, version, True)
    live = _get("server_live", "the server is live", _flag("live"))
    is_ready = _get("server_ready", "the model loaded and a warm-up prediction succeeded", ready)
    not_ready = {"description": "not ready yet", "content": ready}
    is_ready["get"]["responses"]["503"] = not_ready
    model_ready = _get("model_ready", "model readiness", ready, "404", parameters=model)
    version_ready = _get(
        "model_version_ready", "model readiness", ready, "404", parameters=versioned
    )
    for answer in (model_ready, version_ready):
        answer["get"]["responses"]["503"] = not_ready
    return {
        "/v2/health/live": live,
        "/v2/health/ready": is_ready,
        # MLflow's scoring server's readiness paths (its client and SageMaker probe /ping)
        "/ping": _renamed(is_ready, "ping"),
        "/health": _renamed(is_ready, "health"),
        "/v2": _get("server_metadata", "server metadata", _json_body("ServerMetadata")),
        "/v2/models/{model_name}": _get(
            "model_metadata", "model metadata", meta, "404", parameters=model
        ),
        "/v2/models/{model_name}/versions/{model_version}": _get(
            "model_version_metadata", "model metadata", meta, "404", parameters=versioned
        ),
        "/v2/models/{model_name}/config": _get(
            "model_config", "Triton's model configuration", config, "404", parameters=model
        ),
        "/v2/models/{model_name}/versions/{model_version}/config": _get(
            "model_version_config",
            "Triton's model configuration",
            config,
            "404",
            parameters=versioned,
        ),
        "/v2/models/{model_name}/ready": model_ready,
        "/v2/models/{model_name}/versions/{model_version}/ready": version_ready,
        "/v2/models/{model_name}/infer": _infer(example, False, name, version),
        "/v2/models/{model_name}/versions/{model_version}/infer": _infer(
            example, True, name, version
        ),
    }


def _post(
    operation: str, summary: str, request: str, response: str, example: Any, **more: Any
) -> Any:
    """A POST of a JSON body (``more``: other media types it takes, by name)."""
    content = {**_json_body(request, example), **more}
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "requestBody": {"required": True, "content": content},
            "responses": _answers(response, "400", "409", "413", "415", "500"),
        }
    }


def _csv(row: dict[str, Any]) -> dict[str, Any]:
    """``/invocations``' CSV body (serving/tabular.py), with ``row`` as its example."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerows([list(row), ["" if v is None else v for v in row.values()]])
    return {"schema": {"type": "string"}, "example": text.getvalue()}


def document(
    signature: Signature, *, name: str, version: str, profile: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.0 document of a server of this model."""
    row = {f.name: example_value(f, profile or {}) for f in signature.features}
    v2_example = {
        "id": "example-1",
        "inputs": [
            {
                "name": f.name,
                "shape": [1],
                "datatype": "BYTES" if f.type == "string" else "FP32",
                "data": [row[f.name]],
            }
            for f in signature.features
        ],
    }
    paths = {
        **_v2_paths(name, version, v2_example),
        "/invocations": _post(
            "invocations",
            "MLflow scoring-server bodies: JSON, or CSV (a header row, or none and the "
            "features in signature order)",
            "InvocationsRequest",
            "InvocationsResponse",
            {"dataframe_records": [row]},
            **{"text/csv": _csv(row)},
        ),
        "/predict": _post(
            "predict",
            "plain records: one answer object per row",
            "PredictRequest",
            "PredictResponse",
            {"instances": [row]},
        ),
        "/metrics": _get("metrics", "Prometheus metrics (text format)", _text("text/plain")),
        "/": _get("demo_page", "the demo page: a form for one prediction", _text("text/html")),
        "/docs": _get("docs", "this document as a page", _text("text/html")),
        "/openapi.json": _get(
            "openapi", "this document", {"application/json": {"schema": {"type": "object"}}}
        ),
    }
    kind = "classifier" if signature.task == "classification" else "regressor"
    classes = f" predicting one of {len(signature.classes)} classes" if signature.classes else ""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{name} (shipml model server)",
            "version": version,
            "description": f"Model {name!r} version {version}, a {kind} of "
            f"{len(signature.features)} features{classes}. The Open Inference Protocol (V2) "
            "over REST (JSON and binary tensors) and gRPC (when served with --grpc-port), "
            "MLflow's /invocations and /predict.",
        },
        "paths": paths,
        "components": {"schemas": component_schemas(signature, name, version)},
    }
