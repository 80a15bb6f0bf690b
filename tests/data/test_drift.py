"""Streaming drift statistics: binned tests agree with scipy's exact ones, windows merge,
memory does not grow with rows, the default methods follow the reference's size, and
odd values (missing, infinite, unseen, lumped categories) are counted where they belong."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from shipml.data import stattests
from shipml.data.drift import OTHER, Counts, Reference, Settings, Window, compare, reference_of
from shipml.data.profile import table_profile


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 4000
    return pd.DataFrame(
        {
            "x": rng.normal(10, 2, n),
            "y": rng.exponential(3, n),
            "color": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "flag": rng.choice(["yes", "no"], n),
        }
    )


def window_of(reference: Reference, frame: pd.DataFrame) -> Window:
    window = Window(reference)
    window.add({c: frame[c].to_numpy() for c in frame.columns})
    return window


def test_binned_tests_agree_with_scipys_exact_ones(frame):
    ref_rows, cur = frame.iloc[:800], frame.iloc[800:].copy()
    cur["x"] = cur["x"] + 0.6
    reference = Reference.from_profile(table_profile(ref_rows))
    counts = window_of(reference, cur).features
    x = reference.features["x"]
    exact_w = stats.wasserstein_distance(ref_rows["x"], cur["x"]) / ref_rows["x"].std()
    binned_w = stattests.wasserstein(
        x.counts, counts["x"].bins, x.edges, tuple(counts["x"].outside), x.std
    )
    assert binned_w == pytest.approx(exact_w, rel=0.05)
    # KS on bins is conservative (never more significant than the exact test), same verdict.
    exact_p = stats.ks_2samp(ref_rows["x"], cur["x"]).pvalue
    binned_p = stattests.ks(x.counts, counts["x"].bins)
    assert binned_p >= exact_p * 0.999 and binned_p < 0.05 and exact_p < 0.05
    color = reference.features["color"]
    observed = cur["color"].value_counts()[color.categories].to_numpy()
    exact_chi = stats.chi2_contingency([color.counts, observed], correction=False).pvalue
    assert stattests.chisquare(color.counts, counts["color"].bins) == pytest.approx(exact_chi)


def test_the_same_rows_do_not_drift_and_shifted_ones_do(frame):
    reference = Reference.from_profile(table_profile(frame))
    same = compare(window_of(reference, frame))
    assert same.drifted == [] and not same.dataset_drift
    assert all(
        f.test.statistic == pytest.approx(1.0) for f in same.features if f.test.kind == "p_value"
    )
    moved = frame.copy()
    moved["y"] = moved["y"] * 1.5
    moved.loc[moved.index[:1500], "color"] = "blue"
    result = compare(window_of(reference, moved))
    assert result.drifted == ["y", "color"]
    assert result.drift_share == 0.5 and result.dataset_drift  # Evidently's default share


def test_default_methods_follow_the_reference_size():
    assert stattests.default_method(True, 1000, 40, 1000) == "ks"
    assert stattests.default_method(True, 1001, 40, 1000) == "wasserstein"
    assert stattests.default_method(False, 500, 3, 1000) == "chisquare"
    assert stattests.default_method(False, 500, 2, 1000) == "z"
    assert stattests.default_method(False, 5000, 3, 1000) == "jensenshannon"
    assert stattests.default_method(True, 5000, 4, 1000) == "jensenshannon"  # few values


def test_large_references_use_distances_and_configured_methods_win(frame):
    reference = Reference.from_profile(table_profile(frame))  # 4000 rows
    result = compare(window_of(reference, frame.iloc[:500]))
    methods = {f.name: f.test.method for f in result.features}
    assert methods == {
        "x": "wasserstein",
        "y": "wasserstein",
        "color": "jensenshannon",
        "flag": "jensenshannon",
    }
    settings = Settings(methods={"x": "psi"}, thresholds={"x": 0.5}, disabled=frozenset({"y"}))
    chosen = {f.name: f for f in compare(window_of(reference, frame.iloc[:500]), settings).features}
    assert chosen["x"].test.method == "psi" and chosen["x"].test.threshold == 0.5
    assert not chosen["y"].judged and chosen["y"].test is None


def test_windows_merge_to_the_same_counts_and_memory_stays_flat(frame):
    reference = Reference.from_profile(table_profile(frame))
    whole = window_of(reference, frame)
    parts = Window(reference)
    for start in range(0, len(frame), 600):
        chunk = frame.iloc[start : start + 600]
        parts.merge(window_of(reference, chunk))
    for name in frame.columns:
        assert (parts.features[name].bins == whole.features[name].bins).all()
    assert parts.rows == whole.rows == len(frame)
    big = pd.concat([frame] * 25, ignore_index=True)
    window = window_of(reference, big)
    assert window.features["x"].bins.shape == whole.features["x"].bins.shape
    assert window.rows == 100_000


def test_missing_infinite_and_out_of_range_values_are_counted(frame):
    reference = Reference.from_profile(table_profile(frame))
    x = reference.features["x"]
    counts = Counts(x)
    counts.add(np.array([np.nan, np.inf, -np.inf, x.edges[0] - 5, x.edges[-1], 10.0]))
    assert counts.missing == 1
    assert counts.bins[0] == 2 and counts.bins[-1] == 1  # -inf, below; +inf above
    assert counts.bins[-2] >= 1  # the top edge belongs to the last bin, as in np.histogram
    assert math.isfinite(counts.sum)
    colors = Counts(reference.features["color"])
    colors.add(np.array(["red", "", None, "purple", "purple", "pink"], dtype=object))
    assert colors.missing == 2 and colors.unseen == {"purple": 2, "pink": 1}
    assert colors.rows == 4


def test_unseen_missing_and_range_flags(frame):
    reference = Reference.from_profile(table_profile(frame))
    odd = frame.copy()
    odd.loc[odd.index[:500], "color"] = "purple"
    odd.loc[odd.index[:800], "flag"] = None
    odd.loc[odd.index[:1000], "x"] = 1e6
    flags = {f.name: f.flags for f in compare(window_of(reference, odd)).features}
    assert "unseen" in flags["color"] and "missing" in flags["flag"]
    assert "out_of_range" in flags["x"] and "drift" in flags["x"]


def test_rare_categories_lumped_by_the_profile_are_not_unseen():
    values = [f"c{i}" for i in range(80)] * 10  # more than the profile's 50 named categories
    reference = Reference.from_profile(table_profile(pd.DataFrame({"c": values})))
    assert reference.features["c"].categories[-1] == OTHER
    counts = Counts(reference.features["c"])
    counts.add(np.array(["c79", "c0", "never seen"], dtype=object))
    assert counts.unseen == {} and counts.bins[-1] == 2


def test_few_rows_are_not_judged_and_empty_profiles_give_no_reference(frame):
    reference = Reference.from_profile(table_profile(frame))
    result = compare(window_of(reference, frame.iloc[:5]))
    assert not any(f.judged for f in result.features) and not result.dataset_drift
    assert Reference.from_profile({}).features == {}
    assert Reference.from_profile({"columns": {"x": {"type": "float", "count": 0}}}).features == {}
    assert reference_of("p", ["a", "b", "a"]).categories == ["a", "b"]


def test_thresholds_and_verdicts():
    assert stattests.verdict("ks", 0.01).drifted and not stattests.verdict("ks", 0.2).drifted
    assert stattests.verdict("psi", 0.3).drifted and not stattests.verdict("psi", 0.05).drifted
    assert not stattests.verdict("ks", math.nan).drifted  # nothing to compare: no verdict
    assert stattests.verdict("wasserstein", 0.2, 0.5).threshold == 0.5
    assert stattests.verdict("ks", math.inf).to_dict()["statistic"] == 1e308  # JSON-safe


@pytest.mark.parametrize("method", ["chisquare", "z", "jensenshannon", "psi"])
def test_a_window_of_categories_the_reference_never_had_drifts(method):
    """Evidently compares over every category either sample has; so does shipml. Before,
    unseen values were left out of the test: a window of only new categories was an
    empty one (NaN, "no drift"), and one of 40% new ones was judged on the other 60%."""
    reference = Reference.from_profile(table_profile(pd.DataFrame({"c": ["a", "b"] * 100})))
    settings = Settings(methods={"c": method})
    for values in (["new"] * 100, ["a", "b"] * 30 + ["new", "newer"] * 20):
        window = Window(reference)
        window.add({"c": np.array(values, dtype=object)})
        feature = compare(window, settings).features[0]
        assert feature.drifted and feature.test.method == method, (values[-1], feature.test)
        assert feature.psi.drifted
    # the same shares: no drift; PSI and the tests see the unseen bin as empty
    same = Window(reference)
    same.add({"c": np.array(["a", "b"] * 50, dtype=object)})
    assert not compare(same, settings).features[0].drifted


def test_wasserstein_counts_infinite_values_as_infinitely_far(frame):
    """scipy's distance to a sample with an infinite value is infinite; the binned one
    counted the infinities at the range's edge without their values: smaller, and
    negative with 10% of them."""
    reference = Reference.from_profile(table_profile(frame.iloc[:2000]))
    x = reference.features["x"]
    values = frame["x"].iloc[2000:].to_numpy().copy()
    for bad in (np.inf, -np.inf):
        values[:200] = bad
        counts = Counts(x)
        counts.add(values)
        got = stattests.wasserstein(x.counts, counts.bins, x.edges, tuple(counts.outside), x.std)
        assert got == math.inf  # scipy's: inf for one infinity, NaN (inf - inf) for more
        stand_in = np.where(np.isinf(values), np.sign(bad) * 1e12, values)
        assert stats.wasserstein_distance(frame["x"].iloc[:2000], stand_in) > 1e10
        assert stattests.verdict("wasserstein", got).drifted
    # finite values far outside the range: exact there (area from the sums), as scipy's
    far = frame["x"].iloc[2000:].to_numpy() + 3 * frame["x"].std()
    counts = Counts(x)
    counts.add(far)
    got = stattests.wasserstein(x.counts, counts.bins, x.edges, tuple(counts.outside), x.std)
    exact = stats.wasserstein_distance(frame["x"].iloc[:2000], far) / frame["x"].iloc[:2000].std()
    assert got == pytest.approx(exact, rel=0.01)


def test_a_constant_reference_sees_a_window_of_another_value():
    """A reference of one value (chosen test: chi-squared, few values) against a window
    of another: every window row is out of range, which the test must count. Before, the
    test ran over the reference's one bin only and answered p = 1, no drift."""
    reference = Reference.from_profile(table_profile(pd.DataFrame({"k": np.full(500, 3.5)})))
    for values, drifts in ((np.full(100, 9.0), True), (np.full(100, 3.5), False)):
        window = Window(reference)
        window.add({"k": values})
        feature = compare(window).features[0]
        assert feature.test.method == "z" and feature.drifted is drifts, feature.test
    # p-values that underflow are 0, and drift: a million rows moved half a std
    ref = np.array([0, 250_000, 500_000, 250_000, 0], float)
    cur = np.array([0, 100_000, 500_000, 400_000, 0], float)
    assert stattests.ks(ref, cur) == 0.0 and stattests.chisquare(ref, cur) == 0.0
    assert stattests.verdict("ks", stattests.ks(ref, cur)).drifted
