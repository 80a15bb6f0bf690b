"""Checking inputs against the model's signature, with vectorised NumPy checks.

Each feature column arrives as a list (from JSON) or an array and leaves as the model
convention: float32 with NaN for missing, or an object array of str with "" for missing.
Every failure is an ``InvalidRequest`` naming the feature, the row and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from shipml.errors import InvalidRequest
from shipml.model.signature import Feature, Signature


@dataclass
class Rows:
    """Validated input: ``n`` rows as one array per feature, or (all-numeric models) as one
    [n, features] float32 matrix in signature order."""

    n: int
    columns: dict[str, np.ndarray] | None = None
    matrix: np.ndarray | None = None

    def column(self, name: str, index: int) -> np.ndarray:
        if self.columns is not None:
            return self.columns[name]
        assert self.matrix is not None
        return self.matrix[:, index]


NONE = type(None)
NUMBER_TYPES = (int, float, np.integer, np.floating, Decimal)
PLAIN = frozenset({float, int, NONE})  # what orjson gives for a JSON number or null
NUMBERS = frozenset({float, int})
F32_MAX = float(np.finfo(np.float32).max)
SHORT = 60  # characters of a bad value quoted back in an error message


def shorten(value: Any, limit: int = SHORT) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error never echoes a huge value."""
    if isinstance(value, str | bytes) and len(value) > limit:
        value = value[:limit]  # repr of a 5 MB string is never built
        return repr(value)[: limit + 2] + f"... ({len(value)}+ characters)"
    if isinstance(value, list | dict) and len(value) > 8:
        return f"<{type(value).__name__} of {len(value)} items>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def output_names(signature: Signature) -> tuple[str, ...]:
    """The V2 outputs of a model, that a request may ask for: a regression has no
    probabilities."""
    return ("label", "probabilities") if signature.task == "classification" else ("label",)


def _first_bad(values: Any, ok: Any) -> tuple[int, Any]:
    """Row and value of the first element failing ``ok`` (only on the error path)."""
    flat = values.reshape(-1).tolist() if isinstance(values, np.ndarray) else values
    for i, v in enumerate(flat):
        if not ok(v):
            return i, v
    return -1, None


def _one_column(name: str, arr: np.ndarray) -> np.ndarray:
    """[rows] or [rows, 1] as [rows]; any other shape is an error."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr.reshape(-1)
    if arr.ndim != 1:
        raise InvalidRequest(
            f"feature {name!r} has shape {list(arr.shape)}; expected [rows] or [rows, 1]"
        )
    return arr


def _in_range(values: list[Any]) -> bool:
    """Whether every number of a list of floats and ints is within float32's range, by the
    list's min and max (in C, no array): False with a None or an infinity, and when a NaN
    comes first (min and max then return it); a NaN elsewhere is passed over, and stays a
    missing value."""
    try:
        return min(values) >= -F32_MAX and max(values) <= F32_MAX
    except (TypeError, ValueError):  # a None; an empty list
        return False


def _finite(arr: np.ndarray, values: Any, name: str) -> np.ndarray:
    """``arr`` unless it holds an infinity: ``Infinity``, ``1e400`` or a number beyond float32
    (NaN is a missing value, checked against nullability by the caller)."""
    inf = np.isinf(arr)
    if inf.any():
        index = np.unravel_index(int(np.argmax(inf)), arr.shape)
        seen = np.asarray(values, dtype=object)[index] if arr.ndim else values
        raise InvalidRequest(
            f"feature {shorten(name)} has a non-finite or out-of-range value {shorten(seen)} "
            f"at row {int(index[0]) if index else 0}",
            hint="send finite numbers within float32 range (about ±3.4e38); null for missing",
        )
    return arr


# The kinds of values in an object array, read with set(map(type, ...)): one pass in C over
# the values and a Python check per distinct type, so a server needs no pandas (no
# infer_dtype) and a million values cost about 15 ms.


def _pandas_missing(kind: type) -> bool:
    """pandas' own missing values (pd.NA, pd.NaT), found in a frame's object column."""
    return kind.__name__ in ("NAType", "NaTType") and kind.__module__.startswith("pandas")


def _all_numbers(values: np.ndarray) -> bool:
    """Every value a number (no booleans) or missing: pandas' integer, floating,
    mixed-integer-float, decimal or empty."""
    for kind in set(map(type, values)):
        if kind is NONE or _pandas_missing(kind):
            continue
        if issubclass(kind, bool | np.bool_) or not issubclass(kind, NUMBER_TYPES):
            return False
    return True


def _all_text(values: np.ndarray) -> bool:
    """Every value a string or missing (None, NaN): pandas' string or empty."""
    floats = False
    for kind in set(map(type, values)):
        if issubclass(kind, str) or kind is NONE or _pandas_missing(kind):
            continue
        if not issubclass(kind, float | np.floating):
            return False
        floats = True
    return not floats or all(v != v for v in values if isinstance(v, float | np.floating))


def _missing(arr: np.ndarray) -> np.ndarray:
    """None, NaN, pd.NA/NaT and "" of a column of strings, elementwise and vectorised."""
    if any(_pandas_missing(kind) for kind in set(map(type, arr))):
        arr = np.array([None if _pandas_missing(type(v)) else v for v in arr], dtype=object)
    nothing = np.array([None], dtype=object)
    return np.asarray(np.equal(arr, nothing) | (arr != arr) | (arr == ""), dtype=bool)


def _is_number(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _fits_float(v: Any) -> bool:
    if v is None:
        return True
    try:
        float(v)
    except (OverflowError, TypeError, ValueError):
        return False
    return True


def _is_text(v: Any) -> bool:
    return v is None or isinstance(v, str)


class Validator:
    """Validation for one signature (lookups prepared once, at load time)."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.features = {f.name: f for f in signature.features}
        self.names = signature.names
        # Features whose unknown categories are refused ("accept" ones are not checked).
        self.categories = {
            f.name: np.asarray(f.categories, dtype=object)
            for f in signature.features
            if f.type == "string" and f.categories is not None and f.unseen != "accept"
        }
        self.nullable = np.asarray([f.nullable for f in signature.features])
        self.all_numeric = signature.all_numeric
        self.outputs = output_names(signature)
        # tensor features (an image, a sequence): name -> shape of one row
        self.tensors = {
            f.name: tuple(f.shape or ()) for f in signature.features if f.type == "tensor"
        }

    # -- whole requests ---------------------------------------------------------------
    def columns(self, raw: dict[str, Any]) -> Rows:
        """Validate one value list per feature."""
        missing = [n for n in self.names if n not in raw]
        if missing:
            raise InvalidRequest(
                f"missing feature {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                hint=f"the model's features: {', '.join(self.names)}",
            )
        extra = [n for n in raw if n not in self.features]
        if extra:
            raise InvalidRequest(
                f"unknown feature {shorten(extra[0])}",
                hint=f"the model's features: {', '.join(self.names)}",
            )
        cols = {name: self.column(self.features[name], raw[name]) for name in self.names}
        rows = {len(c) for c in cols.values()}
        if len(rows) != 1:
            counts = ", ".join(f"{n}: {len(c)}" for n, c in cols.items())
            raise InvalidRequest(f"features have different numbers of rows ({counts})")
        n = rows.pop()
        if n == 0:
            raise InvalidRequest("the request has no rows", hint="send at least one row")
        return Rows(n, columns=cols)

    def matrix(self, values: Any, name: str = "input", *, checked: bool = False) -> Rows:
        """One [rows, features] numeric tensor, columns in signature order. ``checked``:
        a float32 ``values`` already passed ``_numbers`` (finite or NaN)."""
        if not self.all_numeric:
            raise InvalidRequest(
                f"tensor {shorten(name)} is not a feature, and a single 2-D tensor is "
                "accepted only by all-numeric models",
                hint=f"send one tensor per feature: {', '.join(self.names)}",
            )
        if checked and isinstance(values, np.ndarray) and values.dtype == np.float32:
            arr = values
        else:
            arr = self._numbers(values, name)
        if arr.ndim == 1 and len(self.names) == arr.shape[0]:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != len(self.names):
            raise InvalidRequest(
                f"tensor {shorten(name)} has shape {list(arr.shape)}; "
                f"expected [rows, {len(self.names)}]",
                hint=f"columns in this order: {', '.join(self.names)}",
            )
        if arr.shape[0] == 0:
            raise InvalidRequest("the request has no rows", hint="send at least one row")
        nan = np.isnan(arr)
        bad = nan & ~self.nullable if nan.any() else None
        if bad is not None and bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise InvalidRequest(
                f"feature {self.names[col]!r} is missing at row {row}; the model needs a value",
            )
        return Rows(arr.shape[0], matrix=np.ascontiguousarray(arr, dtype=np.float32))

    # -- one column -------------------------------------------------------------------
    def column(self, feature: Feature, values: Any) -> np.ndarray:
        if feature.type == "string":
            return self._strings(feature, values)
        if feature.type == "tensor":
            return self.tensor(feature.name, values)
        arr = _one_column(feature.name, self._numbers(values, feature.name))
        if not feature.nullable:
            nan = np.isnan(arr)
            if nan.any():
                raise InvalidRequest(
                    f"feature {feature.name!r} is missing at row {int(np.argmax(nan))}; "
                    "the model needs a value",
                )
        return arr

    def tensor(self, name: str, values: Any) -> np.ndarray:
        """A tensor feature as float32 ``[rows, *shape]``: each row of the signature's
        shape (or flattened to its size), every value a finite number (never missing)."""
        shape = self.tensors[name]
        arr = self._numbers(values, name)
        size = math.prod(shape)
        if arr.ndim == 2 and arr.shape[1] == size and len(shape) != 1:
            arr = arr.reshape(-1, *shape)  # rows sent flattened
        if arr.ndim != 1 + len(shape) or tuple(arr.shape[1:]) != shape:
            raise InvalidRequest(
                f"tensor feature {name!r} has shape {list(arr.shape)[:10]}; expected "
                f"[rows, {', '.join(map(str, shape))}]",
                hint=f"send one array of shape {list(shape)} per row (or {size} values a row)",
            )
        finite = np.isfinite(arr)
        if not finite.all():
            index = np.unravel_index(int(np.argmin(finite)), arr.shape)
            raise InvalidRequest(
                f"tensor feature {name!r} has {arr[index]} at row {int(index[0])}; "
                "every value must be a finite number",
                hint="a tensor has no missing values: fill them before sending",
            )
        return np.ascontiguousarray(arr, dtype=np.float32)

    @staticmethod
    def finite(values: list[Any]) -> np.ndarray | None:
        """A flat list of JSON numbers (floats and ints, never a bool) as float32 when every
        one is finite and within float32's range; None when one is not, or is null or NaN
        (``_numbers`` then checks them one by one). In C: the types' set, the list's min
        and max, and its sum (NaN exactly when a value is NaN: the values are in range)."""
        if not set(map(type, values)) <= NUMBERS or not _in_range(values):
            return None
        total = sum(values)
        if total != total:
            return None
        return np.asarray(values, dtype=np.float32)

    def _numbers(self, values: Any, name: str) -> np.ndarray:
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            with np.errstate(over="ignore"):
                return _finite(values.astype(np.float32, copy=False), values, name)
        if type(values) is list and set(map(type, values)) <= PLAIN:
            # The usual JSON column: floats, ints and nulls only (never a bool, a string,
            # a list): straight to float32, no object array, no per-type walk.
            if _in_range(values):  # no cast can overflow: no warning to silence, no inf
                return np.asarray(values, dtype=np.float32)
            try:
                with np.errstate(over="ignore"):
                    arr = np.asarray(values, dtype=np.float32)
            except OverflowError:  # an int beyond float
                raise self._too_large(values, name) from None
            return _finite(arr, values, name)
        objects = np.asarray(values, dtype=object)
        flat = objects.reshape(-1)
        if flat.size and isinstance(flat[0], list):
            raise InvalidRequest(
                f"feature {shorten(name)} has ragged or nested lists (one number per row expected)"
            )
        if not _all_numbers(flat):
            row, value = _first_bad(flat.tolist(), _is_number)
            raise InvalidRequest(
                f"feature {shorten(name)} expects numbers; "
                f"got {shorten(value)} at row {max(row, 0)}",
                hint="send JSON numbers (null for a missing value), not strings or booleans",
            )
        try:
            with np.errstate(over="ignore"):
                arr = np.asarray(values, dtype=np.float32)
        except OverflowError:
            raise self._too_large(flat.tolist(), name) from None
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"feature {shorten(name)}: {shorten(str(exc))}") from exc
        return _finite(arr, values, name)

    def _too_large(self, values: list[Any], name: str) -> InvalidRequest:
        """The error for an integer beyond any float (``1`` and 400 zeros), where it is."""
        i, value = _first_bad(values, _fits_float)
        where = f"at row {i}" if name in self.features else f"at value {i} of its data"
        return InvalidRequest(
            f"feature {shorten(name)} has an int too large for a float, {shorten(value)}, " + where,
            hint="send finite numbers within float32 range (about ±3.4e38); null for missing",
        )

    def _strings(self, feature: Feature, values: Any) -> np.ndarray:
        arr = _one_column(feature.name, np.asarray(values, dtype=object))
        if not _all_text(arr):
            row, value = _first_bad(arr, _is_text)
            raise InvalidRequest(
                f"feature {feature.name!r} expects strings; got {shorten(value)} at row {row}",
                hint="send JSON strings (null for a missing value)",
            )
        missing = _missing(arr)
        if missing.any():
            if not feature.nullable:
                raise InvalidRequest(
                    f"feature {feature.name!r} is missing at row {int(np.argmax(missing))}; "
                    "the model needs a value",
                )
            arr = arr.copy()
            arr[missing] = ""
        cats = self.categories.get(feature.name)
        if cats is not None:
            known = np.isin(arr, cats) | missing
            if not known.all():
                row = int(np.argmax(~known))
                raise InvalidRequest(
                    f"feature {feature.name!r} has unknown category {shorten(arr[row])} "
                    f"at row {row}",
                    hint=f"known categories: {', '.join(map(str, cats))} (the model refuses "
                    "categories it never saw)",
                )
        return arr
