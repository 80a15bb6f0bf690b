"""An imported graph checked on its validation rows: the rows as the signature reads them,
the graph's scores on them (with their labels), and its parity with the graph as given."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipml.errors import ModelError
from shipml.model.signature import (
    MATRIX_INPUT,
    Signature,
    is_tensor,
    model_input,
    onnx_feeds,
)


def _bad(message: str, hint: str) -> ModelError:
    return ModelError(message, hint=hint)


def default_roles(produced: set[str], signature: Signature) -> dict[str, str]:
    """Which graph output is the label, the probabilities or the prediction, when the
    signature does not say: the standard names, or the one output of a regressor."""
    if signature.task == "regression" and len(produced) == 1:
        return {"prediction": next(iter(produced))}
    if {"label", "probabilities"} <= produced:
        return {"label": "label", "probabilities": "probabilities"}
    raise _bad(
        f"say which graph output is what: graph outputs {', '.join(sorted(produced))}",
        'add "outputs" to the signature, e.g. {"logits": "output"} or {"probabilities": "p"}',
    )


def validation_frame(
    rows: pd.DataFrame, signature: Signature, labels: str | None
) -> tuple[pd.DataFrame, pd.Series | None]:
    if not isinstance(rows, pd.DataFrame) or rows.empty:
        raise _bad("the validation rows are empty", "give the held-out rows as a Parquet file")
    missing = [n for n in [*signature.names, *([labels] if labels else [])] if n not in rows]
    if missing:
        raise _bad(
            f"the validation rows lack the columns {', '.join(missing)}; they have "
            f"{', '.join(map(str, rows.columns[:12]))}",
            "one column per feature (a tensor feature: one array per row), and the labels",
        )
    y = rows[labels].reset_index(drop=True) if labels else None
    frame = model_input(rows[signature.names].reset_index(drop=True))
    for f in signature.features:
        if (f.type == "tensor") != is_tensor(frame[f.name]):
            raise _bad(f"validation column {f.name!r} does not hold {f.type} values", "")
        if f.type == "tensor":
            sizes = {int(np.asarray(v).size) for v in frame[f.name]}
            if sizes != {int(np.prod(f.shape or []))}:
                raise _bad(
                    f"validation column {f.name!r} has arrays of {sorted(sizes)[:3]} values; "
                    f"shape {f.shape} needs {int(np.prod(f.shape or []))}",
                    "store each row's tensor flattened or nested, of the signature's shape",
                )
    return frame, y


def score(sess: Any, frame: pd.DataFrame, signature: Signature, y: Any) -> dict[str, Any]:
    """Run the graph on the validation rows; its outputs must be well formed."""
    try:
        out = sess.run(None, onnx_feeds(frame, signature))
    except Exception as exc:  # onnxruntime's own exception types
        raise _bad(
            f"the graph fails on the validation rows: {str(exc)[:300]}",
            "check the features' types and shapes against the exported graph",
        ) from exc
    labels = np.asarray(out[0]).reshape(-1)
    n = len(frame)
    report: dict[str, Any] = {"rows": n}
    if len(labels) != n:
        raise _bad(f"the graph gives {len(labels)} predictions for {n} rows", "")
    if signature.task == "regression":
        if not np.isfinite(labels.astype(np.float64)).all():
            raise _bad("the graph predicts non-finite values on the validation rows", "")
        return report
    proba = np.asarray(out[1], dtype=np.float64)
    k = len(signature.classes)
    if proba.shape != (n, k) or not np.isfinite(proba).all():
        raise _bad(f"probabilities of shape {list(proba.shape)}, expected [{n}, {k}]", "")
    worst = float(np.abs(proba.sum(axis=1) - 1.0).max())
    if worst > 1e-3:
        raise _bad(
            f"the probabilities do not sum to 1 (off by up to {worst:.3g})",
            'if the graph gives logits, say so: "outputs": {"logits": "..."}',
        )
    if y is not None:
        report["accuracy"] = float((labels.astype(str) == np.asarray(y).astype(str)).mean())
    return report


def graph_parity(
    original: Any, packaged: Any, frame: pd.DataFrame, signature: Signature, roles: dict[str, str]
) -> dict[str, Any]:
    """The packaged graph against the graph as exported, on the validation rows: the outputs
    shipml added (softmax, arg-max, renamed inputs) change nothing."""
    feeds = onnx_feeds(frame, signature)
    if signature.onnx_input == "matrix":
        feeds = {original.get_inputs()[0].name: feeds[MATRIX_INPUT]}
    names = [o.name for o in original.get_outputs()]
    raw = dict(zip(names, original.run(None, feeds), strict=True))
    got = packaged.run(None, onnx_feeds(frame, signature))
    roles = roles or default_roles(set(names), signature)
    if signature.task == "regression":
        want = np.asarray(raw[roles.get("prediction") or roles["label"]], dtype=np.float64)
        diff = float(np.abs(want.reshape(-1) - np.asarray(got[0], dtype=np.float64)).max())
        return {
            "rows": len(frame),
            "label_agreement": 1.0 if diff == 0 else 0.0,
            "max_probability_diff": diff,
            "tolerance": 0.0,
        }
    if "logits" in roles:
        logits = np.asarray(raw[roles["logits"]], dtype=np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        want = e / e.sum(axis=1, keepdims=True)
    else:
        want = np.asarray(raw[roles["probabilities"]], dtype=np.float64)
    proba = np.asarray(got[1], dtype=np.float64)
    expected = np.asarray(signature.classes)[want.argmax(axis=1)].astype(str)
    if "label" in roles:
        expected = np.asarray(raw[roles["label"]]).reshape(-1).astype(str)
    agree = float((np.asarray(got[0]).reshape(-1).astype(str) == expected).mean())
    diff = float(np.abs(proba - want).max())
    if agree < 1.0 or diff > 1e-5:
        raise _bad(
            f"the packaged graph does not reproduce the exported one: labels agree on "
            f"{agree:.2%}, probabilities differ by up to {diff:.3g}",
            "report it with the graph and the signature",
        )
    return {
        "rows": len(frame),
        "label_agreement": agree,
        "max_probability_diff": diff,
        "tolerance": 1e-5,
    }
