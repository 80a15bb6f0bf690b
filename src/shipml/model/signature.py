"""The input signature of a model: feature names, types, allowed categories, nullability.

shipml models take one column per feature. Two feature types exist at the model
boundary (both ONNX and the server use them):

- ``string``: UTF-8 text; a missing value is the empty string ``""``;
- ``float``: 32-bit float; a missing value is NaN;
- ``tensor``: a float32 array of a fixed ``shape`` per row (an image, a sequence), for
  graphs brought with ``shipml models import``; never missing.

``model_input`` turns any DataFrame into that convention, so training, the ONNX
parity check and serving all see the same values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from shipml.errors import ModelError

if TYPE_CHECKING:  # pandas is imported where a frame is made: the server never needs it
    import pandas as pd

MAX_CATEGORIES = 100
MATRIX_INPUT = "input"


UNSEEN_POLICIES = ("accept", "error")
UNSEEN_PROBE = "\x00shipml-unseen-category"  # a value no real data holds


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # "string" | "float" | "tensor"
    nullable: bool
    categories: list[str] | None = None
    shape: list[int] | None = None  # a tensor's shape per row, e.g. [1, 28, 28]
    # A category outside ``categories``: "error" refuses the row (400 when serving),
    # "accept" scores it. Packaging sets "accept" where it showed the model handles one
    # (``handles_unseen``: finite predictions for a value never seen in training).
    unseen: str = "error"
    handles_unseen: bool = False


@dataclass(frozen=True)
class Signature:
    features: list[Feature]
    task: str = "classification"  # "classification" | "regression"
    classes: list[Any] = field(default_factory=list)
    label_type: str = "string"  # type of the predicted label
    # How the ONNX graph takes its inputs: one [n, 1] tensor per feature ("columns"), or,
    # for all-numeric models, a single [n, features] float tensor named "input" ("matrix").
    onnx_input: str = "columns"
    # With "columns": the graph's input names, feature by feature, where the converter had
    # to change them (ONNX names are identifiers: "sepal length" is the input
    # "sepal_length"). None when they are the features' names.
    onnx_names: list[str] | None = None

    @property
    def all_numeric(self) -> bool:
        return all(f.type == "float" for f in self.features)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def input_names(self) -> list[str]:
        """The ONNX graph's input per feature (with ``onnx_input == "columns"``)."""
        return self.onnx_names if self.onnx_names is not None else self.names

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["onnx_names"] is None:  # the same bytes as before for names kept as they are
            del data["onnx_names"]
        for feature in data["features"]:  # only tensors have a shape (same bytes as before)
            if feature["shape"] is None:
                del feature["shape"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        known = set(Feature.__dataclass_fields__)
        feats = [Feature(**{k: v for k, v in f.items() if k in known}) for f in data["features"]]
        return cls(
            features=feats,
            task=data.get("task", "classification"),
            classes=list(data.get("classes", [])),
            label_type=data.get("label_type", "string"),
            onnx_input=data.get("onnx_input", "columns"),
            onnx_names=_onnx_names(data.get("onnx_names"), len(feats)),
        )


def _onnx_names(value: Any, count: int) -> list[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(isinstance(v, str) for v in value)
    ):
        raise ModelError(
            f"the signature's onnx_names must list one input name per feature ({count}); "
            f"found {str(value)[:200]}",
            hint="the package is damaged: package the model again",
        )
    return value


def _is_string(series: pd.Series) -> bool:
    import pandas as pd

    return (
        isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(series.dtype)
        or pd.api.types.is_object_dtype(series.dtype)
    )


def is_tensor(series: pd.Series) -> bool:
    """A column whose cells are arrays (a tensor feature), not text."""
    import pandas as pd

    if not pd.api.types.is_object_dtype(series.dtype) or series.empty:
        return False
    return isinstance(series.iloc[0], list | tuple | np.ndarray)


def tensor_value(value: Any) -> np.ndarray:
    """One row of a tensor feature as a float32 array: a nested list, an array, or the
    nested object arrays a Parquet list column reads back as."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        parts = [tensor_value(v) for v in value]
        return np.stack(parts) if parts else np.zeros(0, dtype=np.float32)
    return np.asarray(value, dtype=np.float32)


def model_input(df: pd.DataFrame, signature: Signature | None = None) -> pd.DataFrame:
    """``df`` in the model-boundary convention: strings as Python ``str`` with ``""`` for
    missing, arrays (tensor features) as float32 arrays, every other column as float32
    with NaN for missing. With a ``signature``, each feature gets the signature's type (a
    column of only missing values is numeric where the model wants a number)."""
    import pandas as pd

    types = {f.name: f.type for f in signature.features} if signature is not None else {}
    out = {}
    for name in df.columns:
        col = df[name]
        want = types.get(str(name))
        if want == "tensor" or (want is None and is_tensor(col)):
            try:
                out[name] = col.map(tensor_value).astype(object)
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"tensor feature '{name}' has a row that is not an array of numbers of "
                    f"one shape ({str(exc)[:120]})",
                    hint="store each row as a nested list (or array) of numbers, all rows "
                    "of the same shape",
                ) from exc
        elif want == "float" or (want is None and not _is_string(col)):
            out[name] = _floats(col, str(name))
        else:
            values = col.astype(object).where(col.notna(), "")
            out[name] = values.map(str).astype(object)
    return pd.DataFrame(out, index=df.index)


def _floats(col: pd.Series, name: str) -> pd.Series:
    import pandas as pd

    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        return col.astype("float32")
    if _is_string(col):
        try:
            return col.where(col.notna(), np.nan).astype("float32")
        except (TypeError, ValueError):
            bad = next(v for v in col.dropna() if not _parses(v))
            raise ModelError(
                f"feature '{name}' expects numbers; got {str(bad)[:60]!r}",
                hint="convert the column to numbers (missing values as None or NaN)",
            ) from None
    raise ModelError(
        f"feature '{name}' has type {col.dtype}; models take strings and numbers",
        hint="convert it (dates to numbers, for example) in a pipeline step",
    )


def _parses(value: Any) -> bool:
    try:
        np.float32(value)
    except (TypeError, ValueError):
        return False
    return True


def infer_signature(X: pd.DataFrame, y: Any = None, *, classes: Any = None) -> Signature:
    """Read a signature off every row the model saw: pass the training and the validation
    rows together (categories and nullability come from all of them)."""
    import pandas as pd

    feats = []
    for name in X.columns:
        col = X[name]
        if _is_string(col):
            present = col.dropna().astype(str)
            present = present[present != ""]
            values = sorted(present.unique().tolist())
            nullable = bool(col.isna().any() or (col.astype(str) == "").any())
            cats = values if len(values) <= MAX_CATEGORIES else None
            feats.append(Feature(str(name), "string", nullable, cats))
        else:
            feats.append(Feature(str(name), "float", bool(col.isna().any())))
    task = "classification"
    cls_list: list[Any] = []
    label_type = "string"
    if classes is not None:
        cls_list = [c.item() if isinstance(c, np.generic) else c for c in classes]
        label_type = "string" if all(isinstance(c, str) for c in cls_list) else "int"
    elif y is None or pd.api.types.is_numeric_dtype(pd.Series(y).dtype):
        # no classes_: a regressor, whatever the dtype of its target
        task, label_type = "regression", "float"
    return Signature(feats, task=task, classes=cls_list, label_type=label_type)


def onnx_feeds(frame: pd.DataFrame, signature: Signature) -> dict[str, np.ndarray]:
    """ONNX inputs (one [n, 1] tensor per feature) from a frame in the model convention."""
    import pandas as pd

    if signature.onnx_input == "matrix":
        numbers = {f.name: _floats(frame[f.name], f.name) for f in signature.features}
        return {MATRIX_INPUT: pd.DataFrame(numbers).to_numpy(dtype=np.float32)}
    feeds: dict[str, np.ndarray] = {}
    for f, name in zip(signature.features, signature.input_names, strict=True):
        col = frame[f.name]
        if f.type == "tensor":
            rows = [np.asarray(v, dtype=np.float32) for v in col]
            feeds[name] = np.stack(rows).reshape(-1, *(f.shape or []))
        elif f.type == "string":
            feeds[name] = col.to_numpy(dtype=object).reshape(-1, 1)
        else:
            feeds[name] = _floats(col, f.name).to_numpy(dtype=np.float32).reshape(-1, 1)
    return feeds


def probe_unseen(
    predict: Callable[[pd.DataFrame], list[Any]], frame: pd.DataFrame, signature: Signature
) -> dict[str, bool]:
    """For each string feature: does the model give finite predictions when it gets a
    category it never saw? (``predict`` returns the model's outputs for a frame.)"""
    sample = frame.head(16)
    result: dict[str, bool] = {}
    for feature in signature.features:
        if feature.type != "string":
            continue
        probe = sample.copy()
        probe[feature.name] = UNSEEN_PROBE
        try:
            outputs = [np.asarray(o) for o in predict(probe)]
        except Exception:  # onnxruntime/sklearn raise their own types: "not handled"
            result[feature.name] = False
            continue
        numeric = [o for o in outputs if o.dtype.kind == "f"]
        result[feature.name] = all(np.isfinite(o).all() for o in numeric)
    return result


def with_unseen_policy(
    signature: Signature, handled: dict[str, bool], policy: dict[str, str] | None = None
) -> Signature:
    """The signature with each string feature's unseen-category policy: ``policy`` where
    given, else "accept" where the model handles unseen values and "error" elsewhere."""
    policy = dict(policy or {})
    unknown = sorted(set(policy) - {f.name for f in signature.features if f.type == "string"})
    bad = sorted(v for v in policy.values() if v not in UNSEEN_POLICIES)
    if unknown or bad:
        raise ModelError(
            f"invalid unseen-category policy: {', '.join(unknown) or ''} {', '.join(bad)}".strip()
            + " (keys are string features, values accept or error)",
            hint="e.g. unseen={'island': 'error'}",
        )
    features = []
    for f in signature.features:
        if f.type != "string":
            features.append(f)
            continue
        handles = handled.get(f.name, False)
        chosen = policy.get(f.name, "accept" if handles else "error")
        if chosen == "accept" and not handles:
            raise ModelError(
                f"feature {f.name!r}: unseen categories cannot be accepted, the model fails "
                "on a category it never saw",
                hint="make the encoder handle them (OneHotEncoder(handle_unknown='ignore')) "
                "or keep the policy 'error'",
            )
        features.append(replace(f, unseen=chosen, handles_unseen=handles))
    return replace(signature, features=features)
