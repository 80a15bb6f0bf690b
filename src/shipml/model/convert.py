"""Conversion of a scikit-learn model (with XGBoost, LightGBM or CatBoost estimators too:
see ``converters``) to ONNX, and the parity check that proves it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from shipml.errors import ModelError, ParityError
from shipml.model.converters import prepare
from shipml.model.signature import MATRIX_INPUT, Signature, onnx_feeds

if TYPE_CHECKING:  # onnxruntime and pandas are imported when needed, not at import time
    import onnxruntime as ort
    import pandas as pd


class ConversionUnsupported(ModelError):
    """skl2onnx cannot express this estimator (the skops fallback applies)."""


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def to_onnx(model: Any, signature: Signature) -> tuple[bytes, Signature]:
    """The serialized ONNX graph of a fitted scikit-learn estimator or Pipeline, and the
    signature with the input layout used. All-numeric models get one [n, features] input
    (fast to feed); if the model selects columns by name, one input per feature."""
    from skl2onnx.common.data_types import FloatTensorType

    if signature.all_numeric:
        matrix = [(MATRIX_INPUT, FloatTensorType([None, len(signature.features)]))]
        try:
            return _convert(model, matrix)[0], replace(signature, onnx_input="matrix")
        except ConversionUnsupported:
            pass  # e.g. a ColumnTransformer that picks columns by name
    onnx_bytes, inputs = _convert(model, _column_inputs(signature))
    # skl2onnx makes each name an identifier ("sepal length" -> "sepal_length", "1st" ->
    # "_1st"), keeping the order: the graph's names are recorded, feature by feature.
    if len(inputs) != len(signature.features):
        raise ConversionUnsupported(
            f"the ONNX graph takes {len(inputs)} inputs for {len(signature.features)} features",
            hint="use estimators skl2onnx supports, or accept the skops fallback",
        )
    names = None if inputs == signature.names else inputs
    return onnx_bytes, replace(signature, onnx_input="columns", onnx_names=names)


def _column_inputs(signature: Signature) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [
        (f.name, StringTensorType([None, 1]) if f.type == "string" else FloatTensorType([None, 1]))
        for f in signature.features
    ]


def _convert(model: Any, inputs: list[tuple[str, Any]]) -> tuple[bytes, list[str]]:
    """The graph's bytes and its input names."""
    from skl2onnx import to_onnx as skl_to_onnx

    options: dict[int, dict[str, Any]] = {}
    final = _final_estimator(model)
    if hasattr(final, "predict_proba"):
        options[id(final)] = {"zipmap": False}
    opsets = prepare(model)  # registers the boosting frameworks' converters it needs
    try:
        onx = skl_to_onnx(model, initial_types=inputs, options=options, target_opset=opsets)
    except ModelError:
        raise
    except Exception as exc:  # skl2onnx raises many kinds for "cannot convert"
        raise ConversionUnsupported(
            f"ONNX cannot express {type(model).__name__}: {type(exc).__name__}: {exc}",
            hint="use estimators skl2onnx supports, or accept the skops fallback",
        ) from exc
    # skl2onnx lists opset imports in set order (it varies with PYTHONHASHSEED); sort them
    # so the same model always gives the same bytes and the same sha256.
    imports = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in imports:
        onx.opset_import.add(domain=domain, version=version)
    return bytes(onx.SerializeToString()), [i.name for i in onx.graph.input]


def session(onnx_bytes: bytes) -> ort.InferenceSession:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class ParityReport:
    rows: int
    label_agreement: float
    max_probability_diff: float
    tolerance: float
    # rows whose labels differ only because the model's top probabilities tie (within the
    # tolerance): float32 and float64 break the tie differently; both answers are right
    tied: int = 0

    def to_dict(self) -> dict[str, float | int]:
        report: dict[str, float | int] = {
            "rows": self.rows,
            "label_agreement": self.label_agreement,
            "max_probability_diff": self.max_probability_diff,
            "tolerance": self.tolerance,
        }
        return report | ({"tied_rows": self.tied} if self.tied else {})


def check_parity(
    model: Any,
    sess: ort.InferenceSession,
    frame: pd.DataFrame,
    signature: Signature,
    tolerance: float = 1e-4,
) -> ParityReport:
    """Compare ONNX with the original model on ``frame`` (model convention).

    Labels must agree on every row and probabilities within ``tolerance``; a row whose
    labels differ agrees when the model's probability of the graph's label is within
    ``tolerance`` of its highest (a tie: e.g. 10 of 20 trees each way). A graph that
    onnxruntime cannot even run on these rows counts as one ONNX cannot express."""
    try:
        outputs = sess.run(None, onnx_feeds(frame, signature))
    except Exception as exc:  # onnxruntime's own exception types
        raise ConversionUnsupported(
            f"the ONNX graph fails on the validation rows: {exc}",
            hint="use estimators skl2onnx supports, or accept the skops fallback",
        ) from exc
    onnx_label = np.asarray(outputs[0]).reshape(-1)
    ref_label = np.asarray(model.predict(frame)).reshape(-1)
    if signature.task == "regression":
        return _regression_parity(onnx_label, ref_label, tolerance)
    agree = _as_text(onnx_label) == _as_text(ref_label)
    max_diff, tied = 0.0, 0
    if len(outputs) > 1 and hasattr(model, "predict_proba"):
        onnx_proba = np.asarray(outputs[1], dtype=np.float64)
        ref_proba = np.asarray(model.predict_proba(frame), dtype=np.float64)
        max_diff = float(np.max(np.abs(onnx_proba - ref_proba), initial=0.0))
        ties = _ties(model, onnx_label, ref_proba, ~agree, tolerance)
        tied, agree = int(ties.sum()), agree | ties
    report = ParityReport(
        len(frame), float(agree.mean()) if len(agree) else 1.0, max_diff, tolerance, tied
    )
    if not agree.all() or max_diff > tolerance:
        bad = int((~agree).sum())
        first = int(np.argmax(~agree)) if bad else None
        where = f"; first disagreement at validation row {first}" if first is not None else ""
        raise ParityError(
            f"the ONNX graph does not reproduce the model: labels agree on "
            f"{report.label_agreement:.2%} of {len(frame)} rows ({bad} differ), probabilities "
            f"differ by up to {max_diff:.3g} (tolerance {tolerance:g}){where}",
            hint="train on shipml.model_input(df) (float32 numbers, '' for missing strings) and "
            "avoid float64-only steps before trees; or raise [model] parity_tolerance",
        )
    return report


def _as_text(labels: np.ndarray) -> np.ndarray:
    """Labels compared as text; booleans as the integers the graph gives for them (ONNX
    has no boolean labels: skl2onnx makes classes False/True the labels 0/1)."""
    return (labels.astype(np.int64) if labels.dtype == bool else labels).astype(str)


def _ties(
    model: Any, labels: np.ndarray, proba: np.ndarray, differ: np.ndarray, tolerance: float
) -> np.ndarray:
    """Rows (among ``differ``) where the model gives the graph's label a probability
    within ``tolerance`` of its highest."""
    classes = list(_as_text(np.asarray(getattr(model, "classes_", []))))
    ties = np.zeros(len(labels), dtype=bool)
    if len(classes) != proba.shape[1]:
        return ties
    column = {c: i for i, c in enumerate(classes)}
    for row in np.flatnonzero(differ):
        i = column.get(str(labels[row]))
        ties[row] = i is not None and proba[row, i] >= proba[row].max() - tolerance
    return ties


def _regression_parity(onnx: np.ndarray, ref: np.ndarray, tolerance: float) -> ParityReport:
    """Predictions agree within ``tolerance`` relative to their size (absolute below 1).

    A graph computes in float32, whose spacing near 4,000 is 0.00024: an absolute 1e-4
    could never hold for such targets, whatever the converter."""
    got, want = onnx.astype(np.float64), ref.astype(np.float64)
    scaled = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    diff = float(np.max(scaled, initial=0.0))
    if not np.isfinite(got).all() or diff > tolerance:
        worst = int(np.argmax(np.where(np.isfinite(scaled), scaled, np.inf)))
        raise ParityError(
            f"ONNX predictions differ from the model by up to {diff:.3g} of their size "
            f"(tolerance {tolerance:g}) on {len(ref)} validation rows; worst at row {worst}: "
            f"{got[worst]:.6g} instead of {want[worst]:.6g}",
            hint="check for float64-only preprocessing; cast numeric features to float32",
        )
    return ParityReport(len(ref), 1.0, diff, tolerance)


def probe_missing(
    sess: ort.InferenceSession, frame: pd.DataFrame, signature: Signature, rows: int = 16
) -> dict[str, bool]:
    """For each feature: does the model still give finite predictions when it is missing?

    The validation rows alone under-state what a model accepts (a feature with an imputer
    may have no missing value there), so the signature's nullability is measured."""
    sample = frame.head(rows)
    result: dict[str, bool] = {}
    for feature in signature.features:
        if feature.type == "tensor":  # a tensor is never missing
            result[feature.name] = False
            continue
        probe = sample.copy()
        probe[feature.name] = "" if feature.type == "string" else np.float32(np.nan)
        try:
            outputs = sess.run(None, onnx_feeds(probe, signature))
        except Exception:  # onnxruntime raises its own types; any failure means "not nullable"
            result[feature.name] = False
            continue
        numeric = [np.asarray(o) for o in outputs if np.asarray(o).dtype.kind == "f"]
        result[feature.name] = all(np.isfinite(o).all() for o in numeric)
    return result
