"""A classifier that takes any labels (strings, say) for one that takes only 0..k-1.

XGBoost's ``XGBClassifier`` refuses string labels; wrapped, it learns from the encoded
labels and predicts the original ones, in Python and in ONNX (the wrapped model's graph,
then a lookup of its class index in the list of labels)::

    from shipml.model import LabelEncodedClassifier
    model = LabelEncodedClassifier(XGBClassifier(n_estimators=200))
    model.fit(X, species)               # "Adelie", "Gentoo", ...
    model.predict(X)                    # "Adelie", ...; model.classes_ as LabelEncoder's
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted


class LabelEncodedClassifier(ClassifierMixin, BaseEstimator):
    """``estimator`` fitted on ``LabelEncoder().fit_transform(y)``; its predictions
    decoded. ``estimator__name`` reaches the wrapped estimator's parameters (searches)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> LabelEncodedClassifier:
        self.encoder_ = LabelEncoder().fit(np.asarray(y).reshape(-1))
        self.classes_ = self.encoder_.classes_
        self.estimator_ = clone(self.estimator).fit(
            X, self.encoder_.transform(np.asarray(y).reshape(-1)), **fit_params
        )
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        index = np.asarray(self.estimator_.predict(X)).reshape(-1).astype(int)
        return np.asarray(self.classes_[index])

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.predict_proba(X))

    @property
    def n_features_in_(self) -> int:
        return int(self.estimator_.n_features_in_)


def _convert(scope: Any, operator: Any, container: Any) -> None:
    """The wrapped model's graph (class indices, probabilities), then each index looked
    up in the list of classes."""
    from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
    from skl2onnx.algebra.onnx_ops import OnnxArrayFeatureExtractor, OnnxIdentity, OnnxReshape

    model = operator.raw_operator
    opv = container.target_opset
    inner = OnnxSubEstimator(
        model.estimator_, operator.inputs[0], op_version=opv, options={"zipmap": False}
    )
    classes = np.asarray(model.classes_)
    if classes.dtype.kind in "OUS":
        classes = classes.astype(str).astype(object)
    else:
        classes = classes.astype(np.int64)
    flat = np.array([-1], dtype=np.int64)
    index = OnnxReshape(inner[0], flat, op_version=opv)
    found = OnnxArrayFeatureExtractor(classes, index, op_version=opv)  # [1, n]
    label = OnnxReshape(found, flat, op_version=opv, output_names=[operator.outputs[0]])
    proba = OnnxIdentity(inner[1], op_version=opv, output_names=[operator.outputs[1]])
    label.add_to(scope, container)
    proba.add_to(scope, container)


def register_label_encoded() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    update_registered_converter(
        LabelEncodedClassifier,
        "ShipmlLabelEncodedClassifier",
        calculate_linear_classifier_output_shapes,
        _convert,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
