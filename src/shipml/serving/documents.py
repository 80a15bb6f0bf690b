"""What the model server answers to GET: health, server and model metadata, the demo
page, the OpenAPI document and its docs page, ``/metrics``. Every body that does not
change while the server runs is built once, at load time."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

from shipml.errors import ModelNotFound
from shipml.serving import openapi
from shipml.serving.apidocs import build_docs
from shipml.serving.metrics import ServerMetrics
from shipml.serving.page import build_page
from shipml.serving.predictor import Predictor
from shipml.serving.responses import HTML, JSON, json_body
from shipml.serving.validation import shorten

Answer = tuple[int, bytes, bytes]  # status, body, content type
# Readiness: the V2 path, and MLflow's scoring server's (its ScoringServerClient waits on
# /ping; SageMaker probes /ping too).
READY_PATHS = frozenset({"/v2/health/ready", "/ping", "/health"})


class Documents:
    """The GET side of one model's server."""

    def __init__(self, predictor: Predictor, metrics: ServerMetrics, max_batch_size: int) -> None:
        self.name, self.version = predictor.name, predictor.version
        self.metrics = metrics
        described = metadata(predictor)
        self.metadata = json_body(described)
        self.config = json_body(triton_config(described, max_batch_size))
        self.server_meta = json_body(
            {
                "name": "shipml",
                "version": package_version("shipml"),
                "extensions": ["binary_tensor_data", "classification"],
            }
        )
        profile = _profile(predictor)
        self.page = build_page(
            predictor.signature, name=self.name, version=self.version, profile=profile
        )
        document = openapi.document(
            predictor.signature, name=self.name, version=self.version, profile=profile
        )
        self.openapi = json_body(document)
        self.docs = build_docs(document, self.name)

    def check_model(self, parts: list[str]) -> list[str]:
        """``name[/versions/v]...``: 404 unless it names this model; returns the rest."""
        name = parts[0] if parts else ""
        if name != self.name:
            raise ModelNotFound(f"unknown model {shorten(name)}; this server serves {self.name!r}")
        rest = parts[1:]
        if rest[:1] == ["versions"]:
            version = rest[1] if len(rest) > 1 else ""
            if version != self.version:
                raise ModelNotFound(
                    f"model {self.name!r} has no version {shorten(version)} here; "
                    f"serving {self.version!r}"
                )
            rest = rest[2:]
        return rest

    def get(self, path: str, ready: bool) -> Answer:
        if path == "/metrics":
            return 200, self.metrics.render(), self.metrics.content_type.encode()
        if path in ("/v2", "/v2/"):
            return 200, self.server_meta, JSON
        if path == "/v2/health/live":
            return 200, b'{"live":true}', JSON
        if path in READY_PATHS:  # /ping and /health: what MLflow's clients and SageMaker ask
            return (200, b'{"ready":true}', JSON) if ready else (503, b'{"ready":false}', JSON)
        if path in ("/", "/index.html"):
            return 200, self.page, HTML
        if path == "/openapi.json":
            return 200, self.openapi, JSON
        if path == "/docs":
            return 200, self.docs, HTML
        if path.startswith("/v2/models/"):
            try:
                rest = self.check_model(path[len("/v2/models/") :].split("/"))
            except ModelNotFound as exc:
                return 404, json_body({"error": exc.message}), JSON
            if rest == []:
                return 200, self.metadata, JSON
            if rest == ["config"]:
                return 200, self.config, JSON
            if rest == ["ready"]:  # the status says it (tritonclient reads only the status)
                answer = json_body({"name": self.name, "ready": ready})
                return 200 if ready else 503, answer, JSON
        return 404, json_body({"error": f"no such endpoint: GET {shorten(path)}"}), JSON


def metadata(predictor: Predictor) -> dict[str, Any]:
    """The V2 model metadata: inputs, outputs, classes and the ONNX digest."""
    sig = predictor.signature
    inputs = [
        {
            "name": f.name,
            "datatype": "BYTES" if f.type == "string" else "FP32",
            "shape": [-1, *(f.shape or [1])],
            "parameters": {
                "nullable": f.nullable,
                "categories": f.categories,
                **({"unseen": f.unseen} if f.type == "string" else {}),
            },
        }
        for f in sig.features
    ]
    label_datatype = {"string": "BYTES", "float": "FP32"}.get(sig.label_type, "INT64")
    outputs = [{"name": "label", "datatype": label_datatype, "shape": [-1]}]
    if sig.task == "classification":
        outputs.append(
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(sig.classes)]}
        )
    return {
        "name": predictor.name,
        "versions": [predictor.version],
        "platform": "onnxruntime_onnx" if predictor.package.format == "onnx" else "skops",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {
            "classes": sig.classes,
            "onnx_sha256": predictor.onnx_sha256,
            "matrix_input": sig.all_numeric,
        },
    }


TRITON_TYPES = {"BYTES": "TYPE_STRING", "FP32": "TYPE_FP32", "INT64": "TYPE_INT64"}


def triton_config(meta: dict[str, Any], max_batch_size: int) -> dict[str, Any]:
    """The model as Triton's model configuration describes one (what tritonclient's
    ``get_model_config`` reads, over HTTP): ``max_batch_size`` rows per model run, each
    tensor's ``dims`` without its batch dimension; a label (one value per row) is
    ``dims [1]`` reshaped to a scalar, as Triton writes it."""

    def tensor(t: dict[str, Any]) -> dict[str, Any]:
        dims = t["shape"][1:]
        config = {"name": t["name"], "data_type": TRITON_TYPES[t["datatype"]]}
        return {**config, "dims": dims or [1], **({} if dims else {"reshape": {"shape": []}})}

    platform = meta["platform"]
    return {
        "name": meta["name"],
        "platform": platform,
        **({"backend": "onnxruntime"} if platform == "onnxruntime_onnx" else {}),
        "max_batch_size": max_batch_size,
        "input": [tensor(t) for t in meta["inputs"]],
        "output": [tensor(t) for t in meta["outputs"]],
    }


def _profile(predictor: Predictor) -> dict[str, Any] | None:
    """The package's reference profile (typical values for the demo page), if it has one."""
    try:
        return predictor.package.profile
    except (OSError, ValueError):
        return None
