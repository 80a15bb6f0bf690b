"""Bring your own ONNX: a graph exported elsewhere (``torch.onnx.export``, tf2onnx...)
packaged like a model shipml converted itself.

The signature (``signature.json``, the package's own format plus ``outputs``) is checked
against the graph's inputs and outputs; the graph is then given shipml's outputs
(``label``, and ``probabilities`` for a classifier: softmax of logits and the arg-max
class are added when the graph gives logits) and its inputs shipml's names (``input``
for one [rows, features] matrix), scored on the validation rows, which become the
package's hold-out. The original graph's sha256 is kept in the manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.errors import ModelError
from shipml.files import replacing_folder
from shipml.model.package import ModelPackage, new_manifest, seal, write_rest
from shipml.model.signature import (
    MATRIX_INPUT,
    Feature,
    Signature,
)
from shipml.model.validation import default_roles, graph_parity, score, validation_frame

MAX_ONNX_BYTES = 2 * 1024**3  # protobuf's own limit for one file
OUTPUT_ROLES = ("label", "probabilities", "logits", "prediction")
_TYPES = {"float": 1, "string": 8, "tensor": 1}  # onnx.TensorProto FLOAT, STRING


def _bad(message: str, hint: str) -> ModelError:
    return ModelError(message, hint=hint)


def read_signature(path: Path) -> tuple[Signature, dict[str, str]]:
    """The signature and the output mapping (role → graph output name) of ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _bad(
            f"cannot read the signature {path}: {exc}",
            "give a JSON file like a package's signature.json (docs/models.md)",
        ) from exc
    example = '{"features": [{"name": "x", "type": "float"}], "task": "regression"}'
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise _bad(f"{path} has no 'features' list", f"for example {example}")
    outputs = data.pop("outputs", {}) or {}
    if not isinstance(outputs, dict) or not all(
        k in OUTPUT_ROLES and isinstance(v, str) for k, v in outputs.items()
    ):
        raise _bad(
            f"'outputs' in {path} must map roles to graph output names, got {str(outputs)[:80]}",
            f'roles: {", ".join(OUTPUT_ROLES)}; e.g. {{"logits": "output"}}',
        )
    try:
        features = [_feature(f) for f in data["features"]]
        signature = Signature.from_dict({**data, "features": []})
    except (TypeError, ValueError, KeyError) as exc:
        raise _bad(f"invalid signature in {path}: {exc}", f"for example {example}") from exc
    if not features or len({f.name for f in features}) != len(features):
        raise _bad(f"{path} needs at least one feature, each named once", example)
    if signature.task not in ("classification", "regression"):
        raise _bad(f"unknown task {signature.task!r} in {path}", "classification or regression")
    if signature.task == "classification" and len(signature.classes) < 2:
        raise _bad(f"a classifier's signature lists its classes ({path})", '"classes": [...]')
    label_type = "float" if signature.task == "regression" else _label_type(signature.classes)
    signature = Signature(
        features, signature.task, list(signature.classes), label_type, signature.onnx_input
    )
    return signature, outputs


def _feature(raw: Any) -> Feature:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ValueError(f"a feature needs a name: {str(raw)[:80]}")
    kind = raw.get("type")
    if kind not in _TYPES:
        raise ValueError(f"feature {raw['name']!r} has type {kind!r}; use float, string, tensor")
    shape = raw.get("shape")
    if kind == "tensor" and not (
        isinstance(shape, list) and shape and all(type(d) is int and d > 0 for d in shape)
    ):
        raise ValueError(f"tensor feature {raw['name']!r} needs a shape of positive ints")
    return Feature(
        raw["name"],
        kind,
        bool(raw.get("nullable", False)) and kind != "tensor",
        raw.get("categories"),
        shape=[int(d) for d in shape] if kind == "tensor" and shape else None,
    )


def _label_type(classes: list[Any]) -> str:
    if all(isinstance(c, str) for c in classes):
        return "string"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "int"
    raise ValueError("classes must be all strings or all integers")


def _dims(value_info: Any) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _elem(value_info: Any) -> int:
    return int(value_info.type.tensor_type.elem_type)


def load_graph(file: Path) -> tuple[Any, str]:
    """The ONNX model in ``file``, checked, and the sha256 of its bytes."""
    import onnx

    from shipml.model.loading import refuse_pickle

    refuse_pickle(file)
    if not file.is_file():
        raise _bad(f"no ONNX file at {file}", "give the path of a .onnx file")
    if file.stat().st_size > MAX_ONNX_BYTES:
        raise _bad(f"{file} is larger than 2 GB", "export the weights as one ONNX file")
    data = file.read_bytes()
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError...
        raise _bad(
            f"{file} is not a valid ONNX model: {str(exc)[:300]}",
            "export it again (torch.onnx.export, tf2onnx) and check it with onnx.checker",
        ) from exc
    return model, hashlib.sha256(data).hexdigest()


def match_inputs(graph: Any, signature: Signature) -> Signature:
    """The signature with its ONNX layout, once every feature has its graph input."""
    inputs = {i.name: i for i in graph.input if i.name not in {t.name for t in graph.initializer}}
    names = signature.names
    seen = ", ".join(f"{n} {_dims(i)}" for n, i in inputs.items())
    if set(names) <= inputs.keys() and len(inputs) == len(names):
        for f in signature.features:
            _check_input(f, inputs[f.name])
        return _with_layout(signature, "columns")
    if len(inputs) == 1 and signature.all_numeric:
        (only,) = inputs.values()
        dims = _dims(only)
        if _elem(only) == _TYPES["float"] and len(dims) == 2 and dims[1] in (None, len(names)):
            return _with_layout(signature, "matrix")
    raise _bad(
        f"the signature does not match the graph's inputs: features {', '.join(names)}; "
        f"graph inputs {seen}",
        "name each feature after a graph input (float [rows, 1], string [rows, 1], tensor "
        "[rows, *shape]), or give all-float features for one [rows, features] float input",
    )


def _with_layout(signature: Signature, layout: str) -> Signature:
    return Signature(
        signature.features, signature.task, signature.classes, signature.label_type, layout
    )


def _check_input(feature: Feature, value_info: Any) -> None:
    dims, elem = _dims(value_info), _elem(value_info)
    want = [None, *(feature.shape or [1])]
    fits = len(dims) == len(want) and all(
        d is None or w is None or d == w for d, w in zip(dims, want, strict=True)
    )
    if elem != _TYPES[feature.type] or not fits:
        kind = "string" if elem == _TYPES["string"] else f"element type {elem}"
        raise _bad(
            f"feature {feature.name!r} ({feature.type}, shape {want[1:]}) does not fit graph "
            f"input {value_info.name!r} ({kind}, dims {dims})",
            "fix the feature's type or shape in the signature, or export the graph again",
        )


def standard_graph(model: Any, signature: Signature, outputs: dict[str, str]) -> bytes:
    """The graph with shipml's inputs and outputs (label[, probabilities])."""
    from onnx import TensorProto, checker, helper

    graph = model.graph
    produced = {o.name for o in graph.output}
    roles = dict(outputs) or default_roles(produced, signature)
    missing = [f"{r}={n}" for r, n in roles.items() if n not in produced]
    if missing:
        raise _bad(
            f"the signature names outputs the graph does not have: {', '.join(missing)}; "
            f"graph outputs: {', '.join(sorted(produced))}",
            "map roles to the graph's output names in the signature's 'outputs'",
        )
    nodes: list[Any] = []
    if signature.onnx_input == "matrix" and graph.input[0].name != MATRIX_INPUT:
        rename = helper.make_node("Identity", [MATRIX_INPUT], [graph.input[0].name])
        graph.node.insert(0, rename)  # nodes stay in topological order
        renamed = helper.make_tensor_value_info(
            MATRIX_INPUT, TensorProto.FLOAT, [None, len(signature.names)]
        )
        graph.input.remove(graph.input[0])
        graph.input.insert(0, renamed)
    new_outputs = _output_nodes(roles, signature, nodes)
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend(new_outputs)
    if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        model.opset_import.add(domain="", version=17)
    try:
        checker.check_model(model)
    except Exception as exc:
        raise _bad(f"the graph cannot take shipml's outputs: {exc}", "check 'outputs'") from exc
    return bytes(model.SerializeToString())


def _output_nodes(roles: dict[str, str], signature: Signature, nodes: list[Any]) -> list[Any]:
    from onnx import TensorProto, helper, numpy_helper

    if signature.task == "regression":
        source = roles.get("prediction") or roles.get("label")
        if source is None:
            raise _bad("a regression's signature names its 'prediction' output", "see above")
        nodes.append(helper.make_node("Flatten", [source], ["shipml_flat"], axis=0))
        shape = numpy_helper.from_array(np.array([-1], dtype=np.int64), "shipml_minus_one")
        nodes.append(helper.make_node("Constant", [], ["shipml_shape"], value=shape))
        nodes.append(helper.make_node("Reshape", ["shipml_flat", "shipml_shape"], ["label"]))
        return [helper.make_tensor_value_info("label", TensorProto.FLOAT, [None])]
    if "logits" in roles:
        nodes.append(helper.make_node("Softmax", [roles["logits"]], ["probabilities"], axis=-1))
    elif "probabilities" in roles and roles["probabilities"] != "probabilities":
        nodes.append(helper.make_node("Identity", [roles["probabilities"]], ["probabilities"]))
    elif "probabilities" not in roles:
        raise _bad("a classifier's signature names its 'logits' or 'probabilities'", "")
    label_type = TensorProto.STRING if signature.label_type == "string" else TensorProto.INT64
    if "label" in roles and roles["label"] != "label":
        nodes.append(helper.make_node("Identity", [roles["label"]], ["label"]))
    elif "label" not in roles:
        classes = np.asarray(
            signature.classes, dtype=object if label_type == TensorProto.STRING else np.int64
        )
        table = numpy_helper.from_array(classes, "shipml_classes")
        nodes.append(helper.make_node("Constant", [], ["shipml_classes"], value=table))
        nodes.append(
            helper.make_node("ArgMax", ["probabilities"], ["shipml_index"], axis=1, keepdims=0)
        )
        nodes.append(helper.make_node("Gather", ["shipml_classes", "shipml_index"], ["label"]))
    return [
        helper.make_tensor_value_info("label", label_type, [None]),
        helper.make_tensor_value_info(
            "probabilities", TensorProto.FLOAT, [None, len(signature.classes)]
        ),
    ]


def import_onnx(
    onnx_file: str | Path,
    signature_file: str | Path,
    rows: pd.DataFrame,
    *,
    labels: str | None = None,
    path: str | Path,
    lineage: dict[str, Any] | None = None,
    reference_profile: dict[str, Any] | None = None,
) -> ModelPackage:
    """Package the graph in ``onnx_file``, described by ``signature_file`` and validated
    on ``rows`` (with the labels in column ``labels``), into ``path``."""
    from dataclasses import replace

    from shipml.model.convert import probe_missing, session

    signature, roles = read_signature(Path(signature_file))
    model, sha256 = load_graph(Path(onnx_file))
    signature = match_inputs(model.graph, signature)
    original = model.SerializeToString()
    onnx_bytes = standard_graph(model, signature, roles)
    frame, y = validation_frame(rows, signature, labels)
    sess = session(onnx_bytes)
    report = score(sess, frame, signature, y)
    parity = graph_parity(session(original), sess, frame, signature, roles)
    handles = probe_missing(sess, frame, signature)
    features = [replace(f, nullable=f.nullable or handles[f.name]) for f in signature.features]
    signature = replace(signature, features=features)
    manifest = new_manifest(
        format="onnx",
        estimator="onnx (imported)",
        imported={"file": Path(onnx_file).name, "sha256": sha256, "outputs": roles},
        validation=report,
        parity=parity,
    )
    target = Path(path)
    with replacing_folder(target, prefix=".pkg-") as tmp:
        (tmp / "model.onnx").write_bytes(onnx_bytes)
        write_rest(tmp, frame, y, signature, manifest, lineage, reference_profile)
        seal(tmp, manifest)
    return ModelPackage(target, manifest)
