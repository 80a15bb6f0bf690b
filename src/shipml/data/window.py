"""A window of rows counted into a reference's bins as they stream by (numeric: one bin
below the range, the reference's bins, one above; categorical: the reference's
categories, ``other`` and ``unseen`` values), keeping per feature only fixed-size counts
and sums: memory does not grow with the rows. Windows merge, so a rolling window is a
ring of them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from shipml.data.reference import OTHER, FeatureReference, Reference

MAX_UNSEEN = 1000  # distinct unseen values named per feature and window; more are counted


class Counts:
    """One feature's counts in a window: fixed size whatever the rows.

    Numeric values are counted by sorting each chunk (numpy's vectorised sort) and
    finding the reference's edges in it: bin counts, missing and infinite values and the
    sums below and above the range are then contiguous slices — no per-value Python and
    a handful of passes over the chunk. Categories are counted by one hashing pass
    (Arrow's ``value_counts`` for Arrow columns, pandas' otherwise); only the distinct
    values are looked at in Python."""

    __slots__ = ("bins", "missing", "outside", "ref", "sum", "unseen")

    def __init__(self, ref: FeatureReference) -> None:
        self.ref = ref
        self.bins = np.zeros(len(ref.counts), dtype=np.int64)
        self.missing = 0
        self.sum = 0.0  # of the finite values
        self.outside = [0.0, 0.0]  # sums of the values below / above the range (infinities too)
        self.unseen: dict[str, int] = {}

    @property
    def rows(self) -> int:
        return int(self.bins.sum()) + sum(self.unseen.values())

    def add(self, values: Any) -> None:
        """Count a chunk: a numpy array, a list, a pandas Series or an Arrow array."""
        if self.ref.numeric:
            self._add_numeric(_floats(values))
        else:
            self._add_categories(*_value_counts(values))

    def _add_numeric(self, values: np.ndarray) -> None:
        x = np.sort(values.reshape(-1))  # NaN last, after +inf
        if not len(x):
            return
        valid = int(np.searchsorted(x, np.inf, side="right"))  # the first NaN
        self.missing += len(x) - valid
        if not valid:
            return
        # Positions of the edges: values below each inner edge, and at or below the last
        # one (the last bin includes its right edge, as np.histogram counts).
        pos = np.searchsorted(x[:valid], self.ref.probes, side="left")
        self.bins[0] += pos[0]
        self.bins[1:-1] += np.diff(pos)
        self.bins[-1] += valid - pos[-1]
        lo = int(np.searchsorted(x, -np.inf, side="right"))  # after the -inf values
        hi = int(np.searchsorted(x, np.inf, side="left"))  # before the +inf values
        self.sum += float(x[lo:hi].sum())
        # The sums outside the range include the infinite values: a window with some is
        # infinitely far from the reference (Wasserstein), not nearer (a count of them
        # at the edge without their values made the distance smaller, even negative).
        first, last = int(pos[0]), int(pos[-1])
        if first:
            self.outside[0] += float(x[:first].sum())
        if valid > last:
            self.outside[1] += float(x[last:valid].sum())

    def _add_categories(self, values: list[Any], counts: np.ndarray) -> None:
        index = self.ref.index
        lumped = self.ref.lumped
        for value, n in zip(values, counts.tolist(), strict=True):
            if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
                self.missing += n
                continue
            text = str(value)
            i = index.get(text)
            if i is not None:
                self.bins[i] += n
            elif lumped:
                self.bins[-1] += n
            elif text in self.unseen or len(self.unseen) < MAX_UNSEEN:
                self.unseen[text] = self.unseen.get(text, 0) + n
            else:
                self.unseen[OTHER] = self.unseen.get(OTHER, 0) + n

    def merge(self, other: Counts) -> None:
        self.bins += other.bins
        self.missing += other.missing
        self.sum += other.sum
        self.outside = [self.outside[0] + other.outside[0], self.outside[1] + other.outside[1]]
        for k, v in other.unseen.items():
            self.unseen[k] = self.unseen.get(k, 0) + v


def _is_arrow(values: Any) -> bool:
    return type(values).__module__.startswith("pyarrow")


def _floats(values: Any) -> np.ndarray:
    """A chunk of a numeric feature as float64, missing values as NaN."""
    if _is_arrow(values):
        import pyarrow as pa
        import pyarrow.compute as pc

        return np.asarray(
            pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):  # pandas
        return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(values, dtype=np.float64)


def _value_counts(values: Any) -> tuple[list[Any], np.ndarray]:
    """The distinct values of a chunk (missing ones included) and how often each occurs."""
    if _is_arrow(values):
        import pyarrow.compute as pc

        counted = pc.value_counts(values)
        return counted.field("values").to_pylist(), counted.field("counts").to_numpy()
    import pandas as pd

    if not isinstance(values, pd.Series):
        # dtype=object: no conversion to pandas' string type first (it costs 5x the count)
        values = pd.Series(np.asarray(values, dtype=object).reshape(-1), dtype=object)
    counted = values.value_counts(dropna=False, sort=False)
    return counted.index.tolist(), counted.to_numpy()


class Window:
    """Counts of every referenced feature, and of the predictions, over some rows."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.features = {name: Counts(ref) for name, ref in reference.features.items()}
        self.prediction = Counts(reference.prediction) if reference.prediction else None
        self.rows = 0

    def add(self, columns: Mapping[str, Any], predictions: Any = None, rows: int = 0) -> None:
        """Count a batch: one array (numpy, Arrow, a list or a Series) per feature name."""
        n = rows
        for name, counts in self.features.items():
            values = columns.get(name)
            if values is not None:
                counts.add(values)
                n = n or len(values)
        if predictions is not None and self.prediction is not None:
            self.prediction.add(predictions)
            n = n or len(predictions)
        self.rows += n

    def merge(self, other: Window) -> None:
        for name, counts in self.features.items():
            counts.merge(other.features[name])
        if self.prediction is not None and other.prediction is not None:
            self.prediction.merge(other.prediction)
        self.rows += other.rows
