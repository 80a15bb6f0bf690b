"""ONNX converters for gradient-boosted trees: XGBoost, LightGBM and CatBoost.

skl2onnx converts scikit-learn; the frameworks' own converters are registered with it,
so a boosted model converts bare or as the last step of a ``Pipeline`` (the template's
preprocessing, a ``ColumnTransformer``...) into one graph:

- LightGBM and XGBoost: onnxmltools' converters with skl2onnx's shape calculators;
- CatBoost: CatBoost's own ONNX export (``catboost.utils.convert_to_onnx_object``), its
  tree-ensemble node placed into skl2onnx's graph.

Each framework is an extra (``shipml[lightgbm]``...); a model of a framework whose extra
is not installed is a ``ModelError`` naming the extra. Nothing here is imported before
a model needs it.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shipml.errors import ModelError

# onnxmltools writes tree ensembles in version 3 of the ai.onnx.ml domain at most.
ML_OPSET = 3


@dataclass(frozen=True)
class Framework:
    name: str  # also the extra: shipml[name]
    title: str
    modules: tuple[str, ...]  # what the extra installs

    @property
    def install(self) -> str:
        return f"pip install 'shipml[{self.name}]'"


FRAMEWORKS = {
    f.name: f
    for f in (
        Framework("lightgbm", "LightGBM", ("lightgbm", "onnxmltools")),
        Framework("xgboost", "XGBoost", ("xgboost", "onnxmltools")),
        Framework("catboost", "CatBoost", ("catboost",)),
    )
}
_registered: set[str] = set()


def require(name: str) -> Framework:
    """The framework, once every module of its extra imports; else a ModelError."""
    framework = FRAMEWORKS[name]
    for module in framework.modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ModelError(
                f"{framework.title} models need the extra shipml[{framework.name}]: "
                f"the module {module!r} cannot be imported ({exc})",
                hint=f"install it: {framework.install}",
            ) from exc
    return framework


def estimators(model: Any) -> Iterator[Any]:
    """Every estimator in ``model``: pipeline steps, column transformers' parts, wrapped
    estimators (``estimator_``), recursively."""
    yield model
    for _, step in getattr(model, "steps", None) or []:
        yield from estimators(step)
    for part in getattr(model, "transformers_", None) or []:
        yield from estimators(part[1])
    inner = getattr(model, "estimator_", None)
    if inner is not None:
        yield from estimators(inner)


def frameworks_in(model: Any) -> list[str]:
    """The boosting frameworks whose estimators ``model`` contains, in a stable order."""
    found = {type(e).__module__.split(".")[0] for e in estimators(model)}
    return sorted(found & FRAMEWORKS.keys())


def prepare(model: Any) -> dict[str, int] | None:
    """Register the converters ``model`` needs; the target opsets to convert it with
    (None: skl2onnx's defaults, for plain scikit-learn models)."""
    from shipml.model.labels import LabelEncodedClassifier, register_label_encoded

    names = frameworks_in(model)
    if any(isinstance(e, LabelEncodedClassifier) for e in estimators(model)):
        register_label_encoded()
    if not names:
        return None
    for name in names:
        require(name)
        if name not in _registered:
            _REGISTER[name]()
            _registered.add(name)
    from skl2onnx import get_latest_tested_opset_version

    return {"": get_latest_tested_opset_version(), "ai.onnx.ml": ML_OPSET}


_CLASSIFIER_OPTIONS = {"nocl": [True, False], "zipmap": [True, False, "columns"]}


class _Float32Thresholds:
    """A LightGBM booster whose dump has every ``<=`` threshold rounded down to a float32.

    LightGBM compares doubles; ONNX compares float32 features with float32 thresholds.
    A threshold such as 40.69999885559083 lies between two float32 values and rounds to
    the upper one, 40.70000076: a feature of exactly that value went right in LightGBM and
    goes left in ONNX. For a float32 ``x``, ``x <= t`` holds exactly when ``x`` is at most
    the largest float32 not above ``t``: that is the threshold the graph gets.
    (``is_mock`` is onnxmltools' hook for a booster that dumps itself.)"""

    is_mock = True

    def __init__(self, booster: Any) -> None:
        self._booster = booster

    def __getattr__(self, name: str) -> Any:
        return getattr(self._booster, name)

    def dump_model(self) -> dict[str, Any]:
        dump: dict[str, Any] = self._booster.dump_model()
        for tree in dump.get("tree_info", []):
            _round_down(tree["tree_structure"])
        return dump


def _round_down(node: dict[str, Any]) -> None:
    import numpy as np

    stack = [node]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        threshold = node["threshold"]
        if node.get("decision_type") == "<=" and isinstance(threshold, float):
            single = np.float32(threshold)
            if float(single) > threshold:
                single = np.nextafter(single, np.float32(-np.inf))
            node["threshold"] = float(single)
        stack.extend((node["left_child"], node["right_child"]))


def _convert_lightgbm(scope: Any, operator: Any, container: Any) -> None:
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

    rounded = copy.copy(operator.raw_operator)
    rounded._Booster = _Float32Thresholds(operator.raw_operator.booster_)
    operator.raw_operator = rounded
    convert_lightgbm(scope, operator, container)


def _register_lightgbm() -> None:
    from lightgbm import LGBMClassifier, LGBMRegressor
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        _convert_lightgbm,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        _convert_lightgbm,
    )


def _convert_xgboost(scope: Any, operator: Any, container: Any) -> None:
    """onnxmltools' converter reads features from the trees as f0, f1, ...: a model fitted
    on a DataFrame names them after its columns, so it is converted from a copy whose
    booster has no feature names (the i-th column is still feature i)."""
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

    model = operator.raw_operator
    if model.get_booster().feature_names is not None:
        unnamed = copy.copy(model)
        unnamed._Booster = model.get_booster().copy()
        unnamed._Booster.feature_names = None
        operator.raw_operator = unnamed
    convert_xgboost(scope, operator, container)


def _register_xgboost() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        _convert_xgboost,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        XGBRegressor,
        "XGBoostXGBRegressor",
        calculate_linear_regressor_output_shapes,
        _convert_xgboost,
    )


def _catboost_node(scope: Any, operator: Any, container: Any) -> None:
    """CatBoost's own export is a graph of one tree-ensemble node (and a ZipMap); that node
    goes into skl2onnx's graph, reading this operator's input, writing its outputs."""
    from catboost.utils import convert_to_onnx_object
    from onnx.helper import get_attribute_value

    model = operator.raw_operator
    try:
        exported = convert_to_onnx_object(model)
    except Exception as exc:  # CatBoostError: e.g. categorical features, unusual labels
        raise ModelError(
            f"CatBoost cannot export this {type(model).__name__} to ONNX: {exc}",
            hint="CatBoost exports models without cat_features and with string or integer "
            "labels: encode categories in the pipeline (e.g. OneHotEncoder) instead",
        ) from exc
    node = exported.graph.node[0]
    if not node.op_type.startswith("TreeEnsemble") or len(exported.graph.initializer):
        raise ModelError(
            f"CatBoost exported an unexpected graph ({node.op_type} ...) for "
            f"{type(model).__name__}",
            hint="report it with the versions of catboost and shipml",
        )
    opsets = {d.domain: d.version for d in exported.opset_import}
    attributes = {a.name: get_attribute_value(a) for a in node.attribute}
    container.add_node(
        node.op_type,
        [operator.inputs[0].full_name],
        [o.full_name for o in operator.outputs],
        op_domain=node.domain,
        op_version=opsets.get(node.domain),
        name=scope.get_unique_operator_name("CatBoost"),
        **attributes,
    )


def _catboost_classifier_parser(
    scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None
) -> list[Any]:
    """A label and a probability tensor (never a ZipMap: shipml reads the tensor)."""
    from skl2onnx._parse import _get_sklearn_operator_name
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType, guess_tensor_type

    operator = scope.declare_local_operator(_get_sklearn_operator_name(type(model)), model)
    operator.inputs = inputs
    strings = all(isinstance(c, str) for c in model.classes_)
    label_type = StringTensorType() if strings else Int64TensorType()
    operator.outputs.append(scope.declare_local_variable("label", label_type))
    operator.outputs.append(
        scope.declare_local_variable("probabilities", guess_tensor_type(inputs[0].type))
    )
    return list(operator.outputs)


def _register_catboost() -> None:
    from catboost import CatBoostClassifier, CatBoostRegressor
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        CatBoostClassifier,
        "CatBoostCatBoostClassifier",
        calculate_linear_classifier_output_shapes,
        _catboost_node,
        parser=_catboost_classifier_parser,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        CatBoostRegressor,
        "CatBoostCatBoostRegressor",
        calculate_linear_regressor_output_shapes,
        _catboost_node,
    )


_REGISTER = {
    "lightgbm": _register_lightgbm,
    "xgboost": _register_xgboost,
    "catboost": _register_catboost,
}
