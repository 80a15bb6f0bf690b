"""The profile's numbers are numpy's own: the sort-based quantiles and histogram must
equal ``np.quantile`` and ``np.histogram`` of the finite values, exactly."""

import math

import numpy as np
import pandas as pd
import pytest

from shipml.data.profile import HISTOGRAM_BINS, QUANTILES, column_profile

rng = np.random.default_rng(7)
COLUMNS = {
    "normal": rng.normal(size=20_001),
    "on the bin edges": np.repeat(np.linspace(-1, 1, HISTOGRAM_BINS + 1), 7),
    "ties": rng.integers(0, 3, 5_000).astype(float),
    "ints": rng.integers(-1000, 1000, 4_999),
    "constant": np.full(100, 3.5),
    "one value": np.array([2.0]),
    "zeros of both signs": np.array([-0.0, 0.0, 0.0, -0.0, 1.0]),
    "missing and infinite": np.array([np.nan, 1.0, np.inf, -np.inf, 2.5, np.nan, 7.0]),
    "tiny": np.array([1e-300, 3e-300, 2e-300]),
}


@pytest.mark.parametrize("name", COLUMNS)
def test_numeric_profile_is_numpys(name):
    values = COLUMNS[name]
    out = column_profile(pd.Series(values))
    finite = values[np.isfinite(values)].astype("float64")
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    assert out["histogram"] == {"edges": edges.tolist(), "counts": counts.tolist()}
    expected = np.quantile(finite, QUANTILES)
    assert list(out["quantiles"].values()) == expected.tolist()
    assert out["min"] == finite.min() and math.copysign(1, out["min"]) == math.copysign(
        1, finite.min()
    )
    assert out["max"] == finite.max() and out["mean"] == finite.mean()
    assert out["count"] == int(np.sum(~np.isnan(values)))


def test_columns_without_finite_values_and_nullable_integers():
    empty = column_profile(pd.Series([np.nan, np.inf]))
    assert empty["min"] is None and set(empty["quantiles"].values()) == {None}
    assert "histogram" not in empty
    assert column_profile(pd.Series([np.nan, np.nan]))["count"] == 0
    nullable = column_profile(pd.Series([4, None, 1, 9], dtype="Int64"))
    assert (nullable["missing"], nullable["min"], nullable["max"]) == (1, 1.0, 9.0)
    assert nullable["quantiles"]["p50"] == 4.0


@pytest.mark.parametrize("values", [[1e17] * 3, [1e308, -1e308, 0.0]])
def test_a_range_that_cannot_be_cut_into_bins_has_no_histogram(values, tmp_path):
    # np.histogram refuses both (1e17 ± 0.5 rounds to 1e17; 2e308 is beyond float): the
    # add of such a table failed with a traceback. It now has no histogram (no drift bins).
    out = column_profile(pd.Series(values))
    assert "histogram" not in out and out["min"] == min(values) and out["max"] == max(values)
    path = tmp_path / "big.csv"
    pd.DataFrame({"x": values, "y": [1, 2, 3]}).to_csv(path, index=False)
    from shipml.data import DatasetStore

    snap = DatasetStore(str(tmp_path / "art"), tmp_path).add("big", str(path))
    assert "histogram" in snap.profile["columns"]["y"]
