"""What the online analysis keeps of each answer awaiting a label: the first row's
predicted label per variant, counted once a label comes, in objects the garbage
collector does not walk (a full collection over 200,000 dicts stalled every answer)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from shipml.rollout.analysis import (
    ALREADY_LABELLED,
    MATCHED,
    OK,
    Analysis,
    two_proportion_p,
    wilson,
)


def test_labels_count_per_variant_on_the_first_row():
    analysis = Analysis()
    analysis.record("champion", 0.001, OK, "r1", ["Adelie", "Gentoo"])
    analysis.record("challenger", 0.001, OK, "r1", "Gentoo")
    analysis.record("challenger", 0.001, OK, "r1", "Adelie")  # a variant's newer answer wins
    analysis.record("champion", 0.001, OK, "r2", 1)
    assert analysis.feedback("r1", ["Adelie"]) == MATCHED
    assert analysis.feedback("r1", "Adelie") == ALREADY_LABELLED
    assert analysis.feedback("r2", 1.0) == MATCHED  # compared as text: "1" is not "1.0"
    champion, challenger = analysis.stats("champion"), analysis.stats("challenger")
    assert (champion.labelled, champion.correct) == (2, 1)
    assert (challenger.labelled, challenger.correct) == (1, 1)


def test_answers_awaiting_a_label_are_nothing_for_the_garbage_collector():
    analysis = Analysis()
    for i in range(1000):
        analysis.record("champion", 0.001, OK, f"id-{i}", ["Adelie"] if i % 2 else 3)
        analysis.compare("shadow", {"label": "Adelie"}, {"label": ["Gentoo"]}, f"id-{i}")
    gc.collect()
    kept = list(analysis.predictions.values())
    assert len(kept) == 1000 and all(len(entry) == 5 for entry in kept)  # 2 variants
    assert not any(gc.is_tracked(entry) for entry in kept)


def test_garbage_from_a_model_server_is_compared_without_raising_and_kept_small():
    """A shadow (or champion) that answers a megabyte label, or probabilities that are
    no numbers: the shadow still gets its label counted, nothing raises (a traceback per
    mirrored request, and the shadow's label lost), and no megabyte is kept per answer."""
    analysis = Analysis()
    huge = "x" * 1_000_000
    garbage = [([], []), (["a", "b"], ["c", "d"]), ([None], [1.0]), ([[1, 2], [3]], [[1], [2]])]
    for i, (p1, p2) in enumerate(garbage):
        analysis.record("champion", 0.001, OK, f"g{i}", "Adelie")
        analysis.compare(
            "shadow",
            {"label": "Adelie", "probabilities": p1},
            {"label": huge, "probabilities": p2},
            f"g{i}",
        )
    assert analysis.shadow["shadow"].compared == 4 and not analysis.shadow["shadow"].diffs
    assert all(len(x) <= 257 for entry in analysis.predictions.values() for x in entry[1:])
    assert analysis.feedback("g0", huge[:256]) == MATCHED  # the longest label: no match
    assert (analysis.stats("shadow").labelled, analysis.stats("shadow").correct) == (1, 0)


# (correct, labelled) pairs: tiny, all right, all wrong, equal rates, unequal counts,
# a difference so large at a million labels that the p-value underflows.
PAIRS = [
    ((1, 1), (0, 1)),
    ((200, 200), (195, 200)),
    ((0, 50), (0, 70)),
    ((90, 100), (900, 1000)),
    ((170, 200), (3600, 4000)),
    ((600_000, 1_000_000), (400_000, 1_000_000)),
]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_two_proportion_p_is_scipys_chi_squared_without_continuity_correction(a, b):
    """The pooled two-proportion z-test, two-sided: its z squared is Pearson's chi-squared
    of the 2 x 2 table (scipy's chi2_contingency with correction=False)."""
    from scipy import stats

    got = two_proportion_p(*a, *b)
    table = np.array([[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]])
    if (table.sum(axis=0) == 0).any():  # one outcome only: nothing differs
        assert got == 1.0
        return
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert two_proportion_p(*b, *a) == got  # two-sided: symmetric


@pytest.mark.parametrize(("correct", "total"), [(0, 1), (1, 1), (0, 200), (199, 200), (57, 90)])
def test_wilson_interval_is_scipys(correct, total):
    from scipy import stats

    low, high = wilson(correct, total)
    ci = stats.binomtest(correct, total).proportion_ci(method="wilson")
    # shipml's z is 1.96, scipy's 1.959964: the bounds agree to 1e-4
    assert low == pytest.approx(ci.low, abs=1e-4) and high == pytest.approx(ci.high, abs=1e-4)
    assert 0.0 <= low <= correct / total <= high <= 1.0
    assert wilson(0, 0) == (0.0, 1.0)
