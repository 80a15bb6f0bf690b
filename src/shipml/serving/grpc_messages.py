"""The V2 gRPC messages and the app's HTTP bodies, each way: a ModelInferRequest as the
binary tensor body the app reads, its answer as a ModelInferResponse, metadata, and the
gRPC status of each HTTP error (``Refused``)."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import orjson

from shipml.serving import binary
from shipml.serving.grpc_descriptor import FILE
from shipml.serving.validation import shorten

log = logging.getLogger("shipml.serving")

CONTENTS = {
    "BOOL": ("bool_contents", "BOOL"),
    "INT8": ("int_contents", "INT32"),
    "INT16": ("int_contents", "INT32"),
    "INT32": ("int_contents", "INT32"),
    "INT64": ("int64_contents", "INT64"),
    "UINT8": ("uint_contents", "UINT32"),
    "UINT16": ("uint_contents", "UINT32"),
    "UINT32": ("uint_contents", "UINT32"),
    "UINT64": ("uint64_contents", "UINT64"),
    "FP32": ("fp32_contents", "FP32"),
    "FP64": ("fp64_contents", "FP64"),
    "BYTES": ("bytes_contents", "BYTES"),
}


class Messages:
    """The service's message classes, from a private descriptor pool."""

    def __init__(self) -> None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        pool = descriptor_pool.DescriptorPool()
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(FILE))
        for name in pool.FindFileByName("grpc_predict_v2.proto").message_types_by_name:
            kind = pool.FindMessageTypeByName(f"inference.{name}")
            setattr(self, name, message_factory.GetMessageClass(kind))
        from google.protobuf.message import DecodeError

        self.DecodeError = DecodeError

    def __getattr__(self, name: str) -> Any:  # the classes set above (for mypy)
        raise AttributeError(name)


class Refused(Exception):
    """A call the service answers with an error status (``code`` names a grpc.StatusCode)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# The gRPC status of each HTTP status the app answers with.
STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    413: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


def model_path(name: str, version: str, suffix: str) -> str:
    """``/v2/models/NAME[/versions/V]SUFFIX``; a name or version with a '/' names nothing."""
    if "/" in name or "/" in version or not name:
        raise Refused("NOT_FOUND", f"unknown model {shorten(name)}")
    versions = f"/versions/{version}" if version else ""
    return f"/v2/models/{name}{versions}{suffix}"


def checked(status: int, body: bytes) -> bytes:
    """The body of a 200; any other answer becomes the gRPC error of its status."""
    if status == 200:
        return body
    try:
        message = str(orjson.loads(body).get("error", ""))
    except (orjson.JSONDecodeError, AttributeError):
        message = body[:200].decode("utf-8", "replace")
    raise Refused(STATUS.get(status, "INTERNAL" if status >= 500 else "UNKNOWN"), message)


def infer_body(request: Any) -> tuple[bytes, int, bool]:
    """A ModelInferRequest as a binary V2 request body: the body, its JSON header's length,
    and whether the tensors came as ``raw_input_contents``."""
    raw = list(request.raw_input_contents)
    inputs = list(request.inputs)
    if raw and len(raw) != len(inputs):
        raise Refused(
            "INVALID_ARGUMENT",
            f"{len(raw)} raw_input_contents for {len(inputs)} inputs; send one per input",
        )
    tensors, blobs = [], []
    for i, tensor in enumerate(inputs):
        datatype = tensor.datatype
        if raw:
            if tensor.HasField("contents"):
                raise Refused(
                    "INVALID_ARGUMENT",
                    f"input {shorten(tensor.name)} has contents and raw_input_contents; "
                    "send one or the other",
                )
            blob = raw[i]
        else:
            datatype, blob = _packed(tensor)
        blobs.append(blob)
        tensors.append(
            {
                "name": tensor.name,
                "datatype": datatype,
                "shape": list(tensor.shape),
                "parameters": {"binary_data_size": len(blob)},
            }
        )
    header: dict[str, Any] = {"inputs": tensors, "parameters": {"binary_data_output": True}}
    if request.id:
        header["id"] = request.id
    if len(request.outputs):
        header["outputs"] = [_output(out) for out in request.outputs]
    head = orjson.dumps(header)
    return b"".join([head, *blobs]), len(head), bool(raw)


def _output(out: Any) -> dict[str, Any]:
    """A requested output, with the classification count tritonclient's ``class_count``
    puts in its parameters (serving/classification.py)."""
    requested: dict[str, Any] = {"name": out.name}
    if "classification" in out.parameters:
        param = out.parameters["classification"]
        count = getattr(param, param.WhichOneof("parameter_choice") or "int64_param")
        requested["parameters"] = {"classification": count}
    return requested


def _packed(tensor: Any) -> tuple[str, bytes]:
    """A tensor's typed ``contents`` as binary data (the datatype they are packed as)."""
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        raise Refused(
            "INVALID_ARGUMENT",
            f"input {shorten(tensor.name)}: datatype {shorten(tensor.datatype)} has no typed "
            "contents; send it in raw_input_contents",
        )
    name, packed_as = field
    values = getattr(tensor.contents, name)
    shape = list(tensor.shape)
    if min(shape, default=0) >= 0 and len(values) != math.prod(shape):  # else: a bad shape
        others = [f.name for f, _ in tensor.contents.ListFields() if f.name != name]
        raise Refused(
            "INVALID_ARGUMENT",
            f"input {shorten(tensor.name)}: shape {shorten(shape)} of {tensor.datatype} needs "
            f"{math.prod(shape)} values in contents.{name}, which has {len(values)}"
            + (f" (values came in {', '.join(others)})" if others else ""),
        )
    if packed_as == "BYTES":
        return packed_as, binary.encode_bytes(values)
    return packed_as, np.asarray(values, dtype=binary.DTYPES[packed_as]).tobytes()


def infer_response(messages: Messages, answer: bytes, head: int, raw: bool) -> Any:
    """The app's binary V2 answer as a ModelInferResponse (raw contents when the request
    sent raw contents, typed contents otherwise)."""
    body = orjson.loads(answer[:head])
    blob = memoryview(answer)[head:]
    response = messages.ModelInferResponse(
        model_name=body["model_name"], model_version=body["model_version"], id=body.get("id", "")
    )
    offset = 0
    for out in body["outputs"]:
        size = out["parameters"]["binary_data_size"]
        data = blob[offset : offset + size]
        offset += size
        tensor = response.outputs.add(
            name=out["name"], datatype=out["datatype"], shape=out["shape"]
        )
        if raw:
            response.raw_output_contents.append(bytes(data))
            continue
        values = binary.decode(out["name"], out["datatype"], out["shape"], data)
        getattr(tensor.contents, CONTENTS[out["datatype"]][0]).extend(
            [v.encode() for v in values] if out["datatype"] == "BYTES" else values.tolist()
        )
    return response


def metadata_response(messages: Messages, meta: dict[str, Any]) -> Any:
    """The app's model metadata (JSON) as a ModelMetadataResponse (no parameters: the
    message has no field for them)."""
    response = messages.ModelMetadataResponse(
        name=meta["name"], versions=meta["versions"], platform=meta["platform"]
    )
    for kind in ("inputs", "outputs"):
        for tensor in meta[kind]:
            getattr(response, kind).add(
                name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"]
            )
    return response
