"""The binary tensor data extension of the Open Inference Protocol (V2), requests and
responses, as tritonclient and KServe use it by default.

A request whose ``Inference-Header-Content-Length`` header is N carries a JSON header of N
bytes (the V2 request) followed by the tensors' raw bytes: each input whose parameters
hold ``binary_data_size`` takes that many bytes, in the order of the inputs. Numbers are
little-endian, row-major, at their native size; a ``BYTES`` element is a 4-byte
little-endian length followed by that many bytes (UTF-8 text here). The decoded arrays
go into each tensor's ``data``, so the one V2 parser and the one validator check them
(``protocol.parse_v2``) exactly as they check JSON.

An answer is binary for each output the request asks so: ``"binary_data": true`` in the
output's parameters, or ``"binary_data_output": true`` in the request's parameters for all
outputs. The gRPC service (serving/grpc.py) sends its tensors through this same path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from shipml.errors import InvalidRequest
from shipml.serving import classification
from shipml.serving.jsontext import loads
from shipml.serving.protocol import parse_body
from shipml.serving.tabular import parse_csv
from shipml.serving.validation import Rows, Validator, shorten

HEADER = b"inference-header-content-length"
OCTETS = b"application/octet-stream"
# Every datatype of the protocol with a fixed size, as little-endian NumPy dtypes.
DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?",
        "UINT8": "u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}
HINT = "see the binary tensor data extension: docs/serving.md#binary-tensors"


@dataclass(frozen=True)
class BinaryOutputs:
    """How an answer's outputs go back: as binary, ``default`` for all but ``named``; and
    ``top``: the probabilities as that many top classes (serving/classification.py)."""

    default: bool
    named: dict[str, bool]
    top: int = 0

    def __call__(self, name: str) -> bool:
        return self.named.get(name, self.default)


# What parsing a request gives: validated rows, the V2 id to echo, the outputs wanted and
# which of them go back as binary (None: all JSON).
Parsed = tuple[Rows, Any, list[str] | None, BinaryOutputs | None]


def header_value(value: bytes | None) -> int | None:
    """An ``Inference-Header-Content-Length`` value (None: the request has none)."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise InvalidRequest(
            f"invalid Inference-Header-Content-Length {shorten(value.decode('latin-1'))}",
            hint="the length in bytes of the JSON header that starts the body",
        )
    return int(value)


def parse_request(
    protocol: str, raw: bytes, length: int | None, validator: Validator, csv: bool = False
) -> Parsed:
    """A request body (JSON, or a JSON header and binary tensors) parsed and validated by
    the one V2 parser; every endpoint and the gRPC service come through here. ``csv``: an
    ``/invocations`` body in CSV (serving/tabular.py)."""
    if csv:
        return parse_csv(raw, validator), None, None, None
    if length is None:
        body = loads(raw)
    else:
        if protocol != "v2":
            raise InvalidRequest(
                "binary tensor data (Inference-Header-Content-Length) is for V2 inference only",
                hint="POST it to /v2/models/NAME/infer, or send JSON",
            )
        if length > len(raw):
            raise InvalidRequest(
                f"Inference-Header-Content-Length {length} is larger than the body "
                f"({len(raw)} bytes)",
                hint=HINT,
            )
        body = loads(raw[:length])
        attach(body, memoryview(raw)[length:])
    rows, rid, wanted = parse_body(protocol, body, validator)
    return rows, rid, wanted, binary_outputs(body) if protocol == "v2" else None


def attach(body: Any, blob: memoryview) -> None:
    """Decode the binary tensors that follow the JSON header into their inputs' ``data``."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    offset = 0
    for tensor in inputs if isinstance(inputs, list) else []:
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        name = tensor.get("name")
        if type(size) is not int or not 0 <= size <= len(blob) - offset:
            raise InvalidRequest(
                f"tensor {shorten(name)} has binary_data_size {shorten(size)}, but "
                f"{len(blob) - offset} bytes of binary data are left",
                hint=HINT,
            )
        if "data" in tensor:
            raise InvalidRequest(
                f"tensor {shorten(name)} has both 'data' and binary_data_size", hint=HINT
            )
        data = blob[offset : offset + size]
        tensor["data"] = decode(name, tensor.get("datatype"), tensor.get("shape"), data)
        offset += size
    if offset != len(blob):
        raise InvalidRequest(
            f"{len(blob) - offset} bytes of binary data follow the tensors' binary_data_size",
            hint=HINT,
        )


def decode(name: Any, datatype: Any, shape: Any, data: memoryview) -> np.ndarray:
    """One tensor's raw bytes as a flat array (``BYTES``: an object array of str)."""
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidRequest(f"tensor {shorten(name)} has an invalid shape {shorten(shape)}")
    count = math.prod(shape)
    if datatype == "BYTES":
        return _strings(name, count, data)
    dtype = DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InvalidRequest(
            f"tensor {shorten(name)} has unsupported datatype {shorten(datatype)}",
            hint="use BYTES for strings, FP32/FP64/INT* for numbers",
        )
    if len(data) != count * dtype.itemsize:
        raise InvalidRequest(
            f"tensor {shorten(name)} has {len(data)} bytes of binary data, but shape "
            f"{shape} of {datatype} needs {count * dtype.itemsize}",
            hint=HINT,
        )
    array = np.frombuffer(data, dtype=dtype)
    return array if array.flags.aligned else array.copy()


def _strings(name: Any, count: int, data: memoryview) -> np.ndarray:
    """``count`` length-prefixed UTF-8 strings, exactly filling ``data``."""
    if count * 4 > len(data):
        raise InvalidRequest(
            f"tensor {shorten(name)} needs {count} BYTES elements (4 bytes each at least); "
            f"its binary data has {len(data)} bytes",
            hint=HINT,
        )
    raw = bytes(data)
    out: list[str] = []
    pos = 0
    end = len(raw)
    for _ in range(count):
        size = int.from_bytes(raw[pos : pos + 4], "little") if pos + 4 <= end else -1
        pos += 4
        if size < 0 or pos + size > end:
            raise InvalidRequest(
                f"tensor {shorten(name)}: BYTES element {len(out)} runs past its binary data",
                hint="each element is a 4-byte little-endian length, then that many bytes",
            )
        try:
            out.append(raw[pos : pos + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"tensor {shorten(name)}: BYTES element {len(out)} is not UTF-8 text: "
                f"{shorten(raw[pos : pos + size])}"
            ) from None
        pos += size
    if pos != end:
        raise InvalidRequest(
            f"tensor {shorten(name)} has {end - pos} bytes after its {count} BYTES elements",
            hint=HINT,
        )
    array = np.empty(count, dtype=object)
    array[:] = out
    return array


def binary_outputs(body: dict[str, Any]) -> BinaryOutputs | None:
    """Which outputs go back as binary (a request that passed ``parse_v2``)."""
    params = body.get("parameters")
    default = _flag(params, "binary_data_output", "the request")
    named = {}
    for out in body.get("outputs") or []:
        flag = _flag(out.get("parameters"), "binary_data", f"output {shorten(out['name'])}")
        if flag is not None:
            named[out["name"]] = flag
    top = classification.requested(body.get("outputs"))
    if not default and not any(named.values()) and not top:
        return None
    return BinaryOutputs(bool(default), named, top)


def _flag(params: Any, key: str, where: str) -> bool | None:
    if params is None:
        return None
    if not isinstance(params, dict):
        raise InvalidRequest(f"the parameters of {where} must be an object")
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"{key} of {where} must be true or false, got {shorten(value)}")
    return value


def render(body: dict[str, Any], binary: BinaryOutputs | None) -> tuple[bytes, int | None]:
    """A V2 answer (from ``render_v2``) as bytes, with its binary outputs after the JSON
    header; the header's length, or None for an answer that is all JSON."""
    blobs = []
    if binary is not None:
        for out in body["outputs"]:
            if binary(out["name"]):
                blob = encode(out["datatype"], out.pop("data"))
                out["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
    head = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def encode(datatype: str, data: Any) -> bytes:
    """A tensor's values as raw little-endian bytes (``BYTES``: length-prefixed UTF-8)."""
    if datatype == "BYTES":
        return encode_bytes(data)
    return np.ascontiguousarray(data, dtype=DTYPES[datatype]).tobytes()


def encode_bytes(values: Iterable[Any]) -> bytes:
    """``BYTES`` elements (bytes, or text as UTF-8), each after its 4-byte length."""
    parts = []
    for value in values:
        data = value if isinstance(value, bytes) else str(value).encode()
        parts += [len(data).to_bytes(4, "little"), data]
    return b"".join(parts)
