"""The JSON schemas of the model server's requests and answers, made from the model's
signature: each feature's type, whether it may be missing, its categories, the float32
range of its numbers; V2 (JSON and tensors), MLflow's formats, metadata. ``openapi``
puts them in the document."""

from __future__ import annotations

from typing import Any

from shipml.model.signature import Feature, Signature
from shipml.serving.protocol import MAX_ID, NUMERIC_TYPES, OUTPUT_NAMES
from shipml.serving.validation import output_names

FLOAT32_MAX = 3.4028234663852886e38
REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _nullable(schema: dict[str, Any], feature: Feature) -> dict[str, Any]:
    if feature.nullable:
        schema["nullable"] = True
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def value_schema(feature: Feature) -> dict[str, Any]:
    """One value of a feature, as JSON carries it."""
    if feature.type == "float":
        schema: dict[str, Any] = {
            "type": "number",
            "minimum": -FLOAT32_MAX,
            "maximum": FLOAT32_MAX,
            "description": "a number (float32 range)"
            + ("; null when missing" if feature.nullable else ""),
        }
        return _nullable(schema, feature)
    if feature.type == "string":
        cats = feature.categories or []
        if cats and feature.unseen != "accept":
            schema = {"type": "string", "enum": list(cats)}
            text = "one of the categories seen in training"
        else:
            schema = {"type": "string"} if feature.nullable else {"type": "string", "minLength": 1}
            text = "text" + (
                f"; {len(cats)} categories seen in training, new ones accepted" if cats else ""
            )
        schema["description"] = text + ("; null when missing" if feature.nullable else "")
        if cats:
            schema["x-shipml-categories"] = list(cats)
        schema["x-shipml-unseen"] = feature.unseen
        return _nullable(schema, feature)
    # a tensor-shaped feature (an image, a sequence): nested lists of numbers per row
    return {
        "type": "array",
        "items": {},
        "description": f"a tensor of shape {feature.shape} (nested lists of numbers)",
    }


def example_value(feature: Feature, profile: dict[str, Any]) -> Any:
    """A typical value: the profile's median or commonest category, else a plain one."""
    stats = (profile.get("columns") or {}).get(feature.name) or {}
    if feature.type == "float":
        median = (stats.get("quantiles") or {}).get("p50")
        return float(median) if isinstance(median, int | float) and median == median else 0.0
    if feature.type == "string":
        top = next(iter(stats.get("top") or {}), None)  # the commonest category
        if isinstance(top, str) and top in (feature.categories or [top]):
            return top
        return (feature.categories or ["text"])[0]
    return None


def _row(signature: Signature) -> dict[str, Any]:
    """One row of records: a feature that may be missing may be left out (null), as long
    as some row of the request has it."""
    row: dict[str, Any] = {
        "type": "object",
        "description": "one row: a value for every feature of the model",
        "properties": {f.name: value_schema(f) for f in signature.features},
        "additionalProperties": False,
    }
    required = [f.name for f in signature.features if not f.nullable]
    if required:  # OpenAPI 3.0: never an empty list
        row["required"] = required
    return row


def _tensor(feature: Feature) -> dict[str, Any]:
    numeric = feature.type != "string"
    return {
        "type": "object",
        "description": f"feature {feature.name!r} as a tensor of [rows] or [rows, 1]",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string", "enum": [feature.name]},
            "shape": ref("Shape"),
            "datatype": {"type": "string", "enum": sorted(NUMERIC_TYPES) if numeric else ["BYTES"]},
            "data": {"type": "array", "items": value_schema(feature)},
            "parameters": ref("TensorParameters"),
        },
    }


def _matrix(signature: Signature) -> dict[str, Any]:
    number = {"type": "number", "nullable": True, "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    return {
        "type": "object",
        "description": f"all {len(signature.names)} features as one [rows, "
        f"{len(signature.names)}] tensor, columns in this order: {', '.join(signature.names)}",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": ref("Shape"),
            "datatype": {"type": "string", "enum": sorted(NUMERIC_TYPES)},
            "data": {"type": "array", "items": {"anyOf": [number, {"type": "array"}]}},
            "parameters": ref("TensorParameters"),
        },
    }


def _v2_request(signature: Signature) -> dict[str, Any]:
    tensors = [_tensor(f) for f in signature.features]
    if signature.all_numeric:
        tensors.append(_matrix(signature))
    return {
        "type": "object",
        "description": "one tensor per feature (or, for all-numeric models, one matrix)",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string", "maxLength": MAX_ID},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
            "inputs": {"type": "array", "minItems": 1, "items": {"anyOf": tensors}},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "enum": list(output_names(signature))},
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "binary_data": {"type": "boolean"},
                                # Triton's classification extension: the top K classes
                                "classification": {"type": "integer", "minimum": 1},
                            },
                        },
                    },
                },
            },
        },
    }


def _label(signature: Signature) -> dict[str, str]:
    return {"string": {"type": "string"}, "float": {"type": "number"}}.get(
        signature.label_type, {"type": "integer"}
    )


def component_schemas(signature: Signature, name: str, version: str) -> dict[str, Any]:
    return {
        **_v2_schemas(signature, name, version),
        **_mlflow_schemas(signature),
        **_metadata_schemas(name),
    }


def _v2_schemas(signature: Signature, name: str, version: str) -> dict[str, Any]:
    return {
        "Row": _row(signature),
        "Shape": {
            "type": "array",
            "minItems": 1,
            "maxItems": 2,
            "items": {"type": "integer", "minimum": 0},
        },
        "TensorParameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
        "V2InferenceRequest": _v2_request(signature),
        "V2InferenceResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"type": "string", "enum": [name]},
                "model_version": {"type": "string", "enum": [version]},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": ref("V2Output")},
            },
        },
        "V2Output": {
            "type": "object",
            "required": ["name", "shape", "datatype"],
            "properties": {
                "name": {"type": "string", "enum": list(OUTPUT_NAMES)},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "datatype": {"type": "string"},
                "data": {"type": "array", "items": {}},
                "parameters": ref("TensorParameters"),
            },
        },
    }


def _invocations_request(signature: Signature) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "MLflow's scoring bodies: one of these keys (and MLflow's "
        "params, accepted and ignored)",
        "minProperties": 1,
        "maxProperties": 2,
        "properties": {
            "dataframe_split": {
                "type": "object",
                "required": ["columns", "data"],
                "properties": {
                    "columns": {
                        "type": "array",
                        "items": {"type": "string", "enum": signature.names},
                    },
                    "data": {"type": "array", "items": {"type": "array"}},
                },
            },
            "dataframe_records": {"type": "array", "minItems": 1, "items": ref("Row")},
            "instances": {"type": "array", "minItems": 1, "items": ref("Row")},
            "inputs": {"type": "object"},
            "params": {"type": "object"},
        },
    }


def _mlflow_schemas(signature: Signature) -> dict[str, Any]:
    label = _label(signature)
    return {
        "InvocationsRequest": _invocations_request(signature),
        "InvocationsResponse": {
            "type": "object",
            "required": ["predictions"],
            "properties": {
                "predictions": {"type": "array", "items": label},
                "probabilities": {"type": "array", "items": {"type": "array"}},
                "classes": {"type": "array", "items": label},
            },
        },
        "PredictRequest": {
            "type": "object",
            "required": ["instances"],
            "properties": {"instances": {"type": "array", "minItems": 1, "items": ref("Row")}},
        },
        "PredictResponse": {
            "type": "object",
            "required": ["predictions"],
            "properties": {
                "predictions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["label"],
                        "properties": {
                            "label": label,
                            "probabilities": {
                                "type": "object",
                                "additionalProperties": {"type": "number"},
                            },
                        },
                    },
                }
            },
        },
    }


def _metadata_schemas(name: str) -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
        "ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string", "enum": [name]},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"type": "object"}},
                "outputs": {"type": "array", "items": {"type": "object"}},
                "parameters": {"type": "object"},
            },
        },
    }
