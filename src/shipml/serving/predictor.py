"""A loaded model, ready to answer: the ONNX session (or a safely loaded skops model),
the signature, and everything derivable from them, computed once at load time."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipml.errors import InferenceFailed, ModelError
from shipml.model import ModelPackage, load_skops, refuse_pickle
from shipml.model.signature import MATRIX_INPUT, Signature
from shipml.serving.validation import Rows


@dataclass
class Outputs:
    labels: np.ndarray
    probabilities: np.ndarray | None
    # (start ns, end ns, rows) of the model run that answered this batch (tracing)
    timing: tuple[int, int, int] | None = None


class Predictor:
    def __init__(
        self,
        package: ModelPackage,
        *,
        name: str,
        version: str = "1",
        trusted_types: list[str] | None = None,
    ) -> None:
        self.package = package
        self.name = name
        self.version = version
        self.signature: Signature = package.signature
        self.onnx_sha256 = package.onnx_sha256 or ""
        self.lineage = package.lineage
        self.classes = np.asarray(self.signature.classes)
        self.names = self.signature.names
        self.matrix = self.signature.onnx_input == "matrix"
        # (feature, the graph's input for it): ONNX names are identifiers (a skops model
        # has no graph: its inputs are the features' names)
        self._inputs = list(zip(self.names, self.signature.input_names, strict=True))
        # the graph's input shape per feature: [n, 1], or [n, *shape] for a tensor feature
        self._shapes = {f.name: (-1, *(f.shape or [1])) for f in self.signature.features}
        self._model: Any = None
        self._session: Any = None
        if package.format == "onnx":
            self._session = package.onnx_session()
            self._output_names = [o.name for o in self._session.get_outputs()]
        else:
            self._model = load_skops(package.model_file, trusted_types or [])

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        name: str | None = None,
        version: str = "1",
        trusted_types: list[str] | None = None,
    ) -> Predictor:
        """Load a package folder; a pickle-family file is refused before anything runs."""
        if path.is_file():
            refuse_pickle(path)
            raise ModelError(
                f"{path} is a file; shipml serves model package folders",
                hint="package the model with shipml.package_model, or give NAME@ALIAS",
            )
        for file in path.iterdir() if path.is_dir() else []:
            refuse_pickle(file)
        package = ModelPackage.load(path)
        return cls(package, name=name or path.name, version=version, trusted_types=trusted_types)

    def feeds(self, rows: Rows) -> dict[str, np.ndarray]:
        if self.matrix:
            if rows.matrix is not None:
                return {MATRIX_INPUT: rows.matrix}
            return {MATRIX_INPUT: np.column_stack([rows.column(n, 0) for n in self.names])}
        return {
            g: rows.column(n, i).reshape(self._shapes[n]) for i, (n, g) in enumerate(self._inputs)
        }

    def run(self, feeds: dict[str, np.ndarray]) -> Outputs:
        try:
            if self._session is not None:
                out = self._session.run(self._output_names, feeds)
                proba = out[1] if len(out) > 1 else None
                outputs = Outputs(np.asarray(out[0]).reshape(-1), proba)
            else:
                import pandas as pd

                frame = pd.DataFrame({n: feeds[n].reshape(-1) for n in self.names})
                predict_proba = getattr(self._model, "predict_proba", None)
                proba = predict_proba(frame) if predict_proba is not None else None
                outputs = Outputs(np.asarray(self._model.predict(frame)), proba)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InferenceFailed(f"the model failed on a validated input: {exc}") from exc
        return outputs

    def warm_up_rows(self) -> Rows:
        """One plausible row from the signature (first category, zero)."""
        cols: dict[str, np.ndarray] = {}
        for f in self.signature.features:
            if f.type == "string":
                value = f.categories[0] if f.categories else ""
                cols[f.name] = np.asarray([value], dtype=object)
            else:
                cols[f.name] = np.zeros((1, *(f.shape or [])), dtype=np.float32)
        return Rows(1, columns=cols)

    def warm_up(self) -> Outputs:
        return self.run(self.feeds(self.warm_up_rows()))


def non_finite(outputs: Outputs) -> InferenceFailed | None:
    """The error for a request whose model answer holds NaN or infinity (float32
    overflow on extreme but valid inputs), None when it holds none. JSON would carry it
    as null: a label beside null probabilities, which is no answer."""
    proba, labels = outputs.probabilities, outputs.labels
    if (proba is None or _finite(proba)) and (labels.dtype.kind not in "fc" or _finite(labels)):
        return None
    for name, values in (("label", labels), ("probabilities", proba)):
        if values is None or values.dtype.kind not in "fc" or np.isfinite(values).all():
            continue
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        return InferenceFailed(
            f"the model answered NaN or infinity in its {name} for row {row}: it has no "
            "answer for this input",
            hint="the input is valid but beyond what the model computes in float32; check "
            "the model on such values, or bound the features' ranges in its signature",
        )
    return None


def _finite(values: np.ndarray) -> bool:
    """Every value finite? A sum of squares is finite when every value is (one that
    overflows falls through to the exact check): 0.5 µs on a request's few values,
    against 1.6 for ``np.isfinite(values).all()``."""
    return math.isfinite(np.vdot(values, values).real) or bool(np.isfinite(values).all())
