"""Request bodies in, response bodies out: the Open Inference Protocol (V2) and the
bodies MLflow users send (``/invocations``) and a plain ``/predict``.

Parsing produces validated feature columns; rendering turns model outputs into the
protocol's JSON (numbers stay NumPy arrays; orjson serialises them natively).
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import numpy as np

from shipml.errors import InvalidRequest
from shipml.serving.predictor import Outputs
from shipml.serving.validation import Rows, Validator, shorten

NUMERIC_TYPES = frozenset(
    {
        "FP16",
        "FP32",
        "FP64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
    }
)
OUTPUT_NAMES = ("label", "probabilities")
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")  # /invocations
INT = {int}
MAX_ID = 256  # characters of a V2 request id (echoed back)
Columns = Rows


def _require(cond: bool, message: str, hint: str | None = None) -> None:
    if not cond:
        raise InvalidRequest(message, hint=hint)


# -- V2 ------------------------------------------------------------------------------------


def parse_v2(body: Any, validator: Validator) -> tuple[Columns, Any, list[str] | None]:
    """Validated columns, the request id to echo, and the requested output names."""
    _require(isinstance(body, dict), "the body must be a JSON object with an 'inputs' list")
    inputs = body.get("inputs")
    _require(
        isinstance(inputs, list) and len(inputs) > 0,
        "'inputs' must be a non-empty list of tensors",
        hint='e.g. {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}',
    )
    columns = _plain_matrix(inputs, validator)
    if columns is None:
        tensors: dict[str, Any] = {}
        for tensor in inputs:
            name, values = _tensor(tensor, validator)
            if name in tensors:  # plain ifs: no error message is built for a valid body
                raise InvalidRequest(f"tensor {shorten(name)} appears twice")
            tensors[name] = values
        if len(tensors) == 1 and next(iter(tensors)) not in validator.features:
            name, values = next(iter(tensors.items()))
            columns = validator.matrix(values, name, checked=True)  # _tensor checked them
        else:
            columns = validator.columns(tensors)
    outputs = body.get("outputs")
    wanted: list[str] | None = None
    if outputs is not None:
        _require(isinstance(outputs, list), "'outputs' must be a list of {\"name\": ...}")
        wanted = []
        for out in outputs:
            oname = out.get("name") if isinstance(out, dict) else None
            _require(
                oname in validator.outputs,
                f"unknown output {shorten(oname)}",
                hint=f"this model's outputs: {', '.join(validator.outputs)}",
            )
            wanted.append(str(oname))
    rid = body.get("id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > MAX_ID):
        raise InvalidRequest(
            f"'id' must be a string of at most {MAX_ID} characters, got {shorten(rid)}"
        )
    return columns, rid, wanted


def _plain_matrix(inputs: list[Any], validator: Validator) -> Rows | None:
    """The usual body of an all-numeric model, on a short path: one tensor (not a feature)
    of shape ``[rows, features]`` whose data is a flat list of JSON numbers, every one
    finite and within float32's range. Anything else (None) takes the general path, which
    accepts this body too and gives the same rows."""
    if len(inputs) != 1 or not validator.all_numeric:
        return None
    tensor = inputs[0]
    if type(tensor) is not dict:
        return None
    name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
    dtype = tensor.get("datatype")
    if (
        type(name) is not str
        or not name
        or name in validator.features
        or name in validator.tensors
        or type(dtype) is not str
        or dtype not in NUMERIC_TYPES
        or not _is_shape(shape, 2, 2)
        or shape[1] != len(validator.names)
        or shape[0] == 0
        or type(data) is not list
        or len(data) != shape[0] * shape[1]
    ):
        return None
    matrix = validator.finite(data)
    return None if matrix is None else Rows(shape[0], matrix=matrix.reshape(shape))


def _is_shape(shape: Any, low: int, high: int) -> TypeGuard[list[int]]:
    """A list of ``low`` (at least 1) to ``high`` non-negative ints (never a bool); checked
    in C, with no generator."""
    if not isinstance(shape, list) or not low <= len(shape) <= high:
        return False
    return set(map(type, shape)) == INT and min(shape) >= 0


def _tensor(tensor: Any, validator: Validator) -> tuple[str, Any]:
    # Hot path: plain ifs, so no error message is built for a valid tensor.
    if not isinstance(tensor, dict):
        raise InvalidRequest("each input must be an object with name, shape, datatype, data")
    name = tensor.get("name")
    shape = tensor.get("shape")
    dtype = tensor.get("datatype")
    data = tensor.get("data")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("an input tensor has no 'name'")
    if name in validator.tensors:
        return name, _tensor_feature(name, shape, dtype, data, validator, tensor)
    if not _is_shape(shape, 1, 2):
        raise InvalidRequest(
            f"tensor {shorten(name)} has an invalid shape {shorten(shape)}",
            hint="shape is a list of 1 or 2 non-negative integers, e.g. [rows] or [rows, 1]",
        )
    is_bytes = dtype == "BYTES"
    if not is_bytes and (not isinstance(dtype, str) or dtype not in NUMERIC_TYPES):
        raise InvalidRequest(
            f"tensor {shorten(name)} has unsupported datatype {shorten(dtype)}",
            hint="use BYTES for strings, FP32/FP64/INT* for numbers",
        )
    if not isinstance(data, list | np.ndarray):  # an array: binary data (serving/binary.py)
        raise _no_data(name, tensor)
    feature = validator.features.get(name)
    if feature is not None and is_bytes != (feature.type == "string"):
        expected = "BYTES" if feature.type == "string" else "a numeric datatype (FP32...)"
        raise InvalidRequest(f"feature {shorten(name)} expects {expected}, got {dtype}")
    flat: Any
    if isinstance(data, np.ndarray):
        flat = data.reshape(-1)
    else:
        flat = _flatten(data) if data and isinstance(data[0], list) else data
    size = math.prod(shape)
    if len(flat) != size or not size:
        raise _size_error(name, shape, len(flat), size)
    if is_bytes:
        return name, np.asarray(flat, dtype=object).reshape(shape)
    return name, validator._numbers(flat, name).reshape(shape)


def _tensor_feature(
    name: str, shape: Any, dtype: Any, data: Any, validator: Validator, tensor: dict[str, Any]
) -> Any:
    """A tensor feature (an image, a sequence): ``[rows, *shape]`` in the signature's
    shape, or ``[rows, size]`` flattened; numbers only."""
    rank = 1 + len(validator.tensors[name])
    if not _is_shape(shape, 2, rank):
        raise InvalidRequest(
            f"tensor {name!r} has an invalid shape {str(shape)[:80]}",
            hint=f"shape is [rows, {', '.join(map(str, validator.tensors[name]))}]",
        )
    if type(dtype) is not str or dtype not in NUMERIC_TYPES:
        raise InvalidRequest(
            f"feature {name!r} is a tensor of numbers; got datatype {shorten(dtype, 20)}",
            hint="use FP32 (or another numeric datatype)",
        )
    flat: Any
    if isinstance(data, np.ndarray):  # binary data (serving/binary.py)
        flat = data.reshape(-1)
    elif isinstance(data, list):
        flat = _flatten(data) if data and isinstance(data[0], list) else data
    else:
        raise _no_data(name, tensor)
    size = math.prod(shape)
    if len(flat) != size or not size:
        raise _size_error(name, shape, len(flat), size)
    return validator._numbers(flat, name).reshape(shape)  # checked as a feature next


def _no_data(name: str, tensor: dict[str, Any]) -> InvalidRequest:
    """A tensor without a 'data' list: binary data promised by a request that is not
    binary (no Inference-Header-Content-Length), or no values at all."""
    params = tensor.get("parameters")
    if isinstance(params, dict) and "binary_data_size" in params:
        return InvalidRequest(
            f"tensor {shorten(name)} has binary_data_size, but the request has no "
            "Inference-Header-Content-Length header, so it holds no binary data",
            hint="send that header (the JSON part's length in bytes) with the binary "
            "tensors after the JSON, or put the values in 'data'",
        )
    return InvalidRequest(f"tensor {shorten(name)} has no 'data' list")


def _size_error(name: str, shape: list[int], values: int, size: int) -> InvalidRequest:
    """A tensor whose values do not fill its shape, or whose shape holds no values (and
    could not even be allocated empty: [2**63, 0])."""
    if not size:
        return InvalidRequest(
            f"tensor {shorten(name)} has shape {shorten(shape)}, which holds no values: "
            "there are no rows to predict",
            hint="send at least one row, with a value for every column",
        )
    return InvalidRequest(
        f"tensor {shorten(name)} has {values} values but shape {shape} needs {size}"
    )


def _flatten(data: list[Any], depth: int = 0) -> list[Any]:
    if depth > 8:  # a V2 tensor of rank <= 2 never nests this deep
        raise InvalidRequest("tensor data is nested too deeply", hint="send [rows, columns]")
    out: list[Any] = []
    for v in data:
        if isinstance(v, list):
            out.extend(_flatten(v, depth + 1))
        else:
            out.append(v)
    return out


def render_v2(
    outputs: Outputs,
    *,
    model: str,
    version: str,
    request_id: Any,
    wanted: list[str] | None,
    label_type: str,
) -> dict[str, Any]:
    n = len(outputs.labels)
    result: list[dict[str, Any]] = []
    if wanted is None or "label" in wanted:
        if label_type == "string":
            result.append(
                {
                    "name": "label",
                    "shape": [n],
                    "datatype": "BYTES",
                    "data": outputs.labels.tolist(),
                }
            )
        elif label_type == "float":  # regression: never truncate a prediction
            result.append(
                {
                    "name": "label",
                    "shape": [n],
                    "datatype": "FP32",
                    "data": outputs.labels.astype(np.float32),
                }
            )
        else:
            result.append(
                {
                    "name": "label",
                    "shape": [n],
                    "datatype": "INT64",
                    "data": outputs.labels.astype(np.int64),
                }
            )
    proba = outputs.probabilities
    if proba is not None and (wanted is None or "probabilities" in wanted):
        flat = np.ascontiguousarray(proba, dtype=np.float32).reshape(-1)
        result.append(
            {"name": "probabilities", "shape": list(proba.shape), "datatype": "FP32", "data": flat}
        )
    body: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": result}
    if request_id is not None:
        body["id"] = request_id
    return body


# -- MLflow's /invocations and /predict -----------------------------------------------------


def _records(records: Any, validator: Validator, key: str) -> Columns:
    _require(
        isinstance(records, list)
        and len(records) > 0
        and all(isinstance(r, dict) for r in records),
        f"'{key}' must be a non-empty list of objects (one per row)",
        hint='e.g. {"' + key + '": [{"feature": value, ...}]}',
    )
    names = set().union(*(r.keys() for r in records))
    return validator.columns({n: [r.get(n) for r in records] for n in names})


def _rows(rows: Any, columns: list[str], validator: Validator, key: str) -> Columns:
    _require(
        isinstance(rows, list)
        and all(isinstance(r, list) and len(r) == len(columns) for r in rows),
        f"'{key}' rows must be lists of {len(columns)} values",
    )
    return validator.columns({c: [r[i] for r in rows] for i, c in enumerate(columns)})


def parse_invocations(body: Any, validator: Validator) -> Columns:
    """MLflow scoring-server bodies: dataframe_split, dataframe_records, instances, inputs."""
    _require(
        isinstance(body, dict) and len(body) >= 1,
        "the body must be a JSON object with one of dataframe_split, dataframe_records, "
        "instances or inputs",
    )
    given = [key for key in FORMATS if key in body]
    _require(
        len(given) <= 1,
        f"the body has {' and '.join(given)}: which rows to score is ambiguous",
        hint="send exactly one of dataframe_split, dataframe_records, instances, inputs "
        "(as MLflow's scoring server requires)",
    )
    if "dataframe_split" in body:
        split = body["dataframe_split"]
        _require(
            isinstance(split, dict)
            and isinstance(split.get("columns"), list)
            and all(isinstance(c, str) for c in split["columns"]),
            "'dataframe_split' needs 'columns' (a list of feature names) and 'data'",
        )
        return _rows(split.get("data"), split["columns"], validator, "dataframe_split.data")
    if "dataframe_records" in body:
        return _records(body["dataframe_records"], validator, "dataframe_records")
    for key in ("instances", "inputs"):
        if key in body:
            value = body[key]
            if isinstance(value, dict):  # columnar: {"feature": [values]}
                return validator.columns(value)
            if isinstance(value, list) and value and isinstance(value[0], list):
                return _rows(value, validator.names, validator, key)
            return _records(value, validator, key)
    raise InvalidRequest(
        f"unknown body keys {shorten(sorted(body))}",
        hint="use dataframe_split, dataframe_records, instances or inputs",
    )


def parse_predict(body: Any, validator: Validator) -> Columns:
    _require(
        isinstance(body, dict) and "instances" in body,
        'the body must be {"instances": [{feature: value, ...}]}',
    )
    return _records(body["instances"], validator, "instances")


def render_predictions(outputs: Outputs, classes: np.ndarray, detailed: bool) -> dict[str, Any]:
    labels = outputs.labels.tolist()
    proba = outputs.probabilities
    if not detailed:
        body: dict[str, Any] = {"predictions": labels}
        if proba is not None:
            body["probabilities"] = np.asarray(proba, dtype=np.float32)
            body["classes"] = classes.tolist()
        return body
    names = [str(c) for c in classes.tolist()]
    preds = []
    for i, label in enumerate(labels):
        row: dict[str, Any] = {"label": label}
        if proba is not None:
            row["probabilities"] = dict(zip(names, proba[i].tolist(), strict=True))
        preds.append(row)
    return {"predictions": preds}


def parse_body(
    protocol: str, body: Any, validator: Validator
) -> tuple[Columns, Any, list[str] | None]:
    """Validated rows, the V2 request id and the V2 outputs wanted, for ``protocol``
    (``v2``, ``invocations`` or ``predict``)."""
    if protocol == "v2":
        return parse_v2(body, validator)
    if protocol == "invocations":
        return parse_invocations(body, validator), None, None
    return parse_predict(body, validator), None, None
