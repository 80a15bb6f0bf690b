"""The drift tests' p-values and distances are scipy's, to the last bit, without the
server importing ``scipy.stats`` (about 47 MiB of resident memory; see stattests.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from shipml.data import stattests


def test_kolmogorov_distribution_is_scipys_kstwo_on_every_branch() -> None:
    kolmogn = stattests._kolmogn()
    # n <= 140 and larger; x from the Ruben-Gambino ends through the DMTW, Pomeranz,
    # Pelz-Good and Smirnov regions.
    for n in (1, 2, 5, 17, 140, 141, 1000, 20_000, 150_000):
        for x in (0.0, 0.3 / n, 0.7 / n, 0.001, 0.01, 0.03, 0.08, 0.2, 0.45, 0.6, 0.99, 1.0):
            expected = stats.kstwo.sf(x, n)
            assert float(kolmogn(n, x, cdf=False)) == float(expected), (n, x)


def test_ks_chisquare_z_and_jensenshannon_equal_scipys() -> None:
    rng = np.random.default_rng(7)
    for _ in range(25):
        ref = rng.integers(0, 60, size=12).astype(float)
        cur = rng.integers(0, 60, size=12).astype(float)
        ref[0] = max(ref[0], 1.0)
        n, m = ref.sum(), cur.sum()
        gap = np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m))
        assert stattests.ks(ref, cur) == float(stats.kstwo.sf(gap, round(n * m / (n + m))))
        table = np.array([ref, cur])[:, (ref + cur) > 0]
        expected = stats.chi2_contingency(table, correction=False).pvalue
        assert stattests.chisquare(ref, cur) == pytest.approx(expected, rel=1e-12, abs=1e-300)
        assert stattests.jensenshannon(ref, cur) == float(
            jensenshannon(stattests.shares(ref), stattests.shares(cur))
        )
        two_ref, two_cur = ref[:2], cur[:2]
        p1, p2 = two_ref[0] / two_ref.sum(), two_cur[0] / two_cur.sum()
        pooled = (two_ref[0] + two_cur[0]) / (two_ref.sum() + two_cur.sum())
        spread = np.sqrt(pooled * (1 - pooled) * (1 / two_ref.sum() + 1 / two_cur.sum()))
        assert stattests.z_test(two_ref, two_cur) == pytest.approx(
            float(2 * stats.norm.sf(abs((p1 - p2) / spread))), rel=1e-15
        )


def test_the_tests_run_without_importing_scipy_stats() -> None:
    code = (
        "import sys, numpy as np\n"
        "from shipml.data import stattests\n"
        "stattests.warm_up()\n"
        "a, b = np.array([5.0, 9, 3, 7]), np.array([4.0, 2, 8, 1])\n"
        "print(stattests.ks(a, b), stattests.chisquare(a, b), stattests.z_test(a[:2], b[:2]),"
        " stattests.jensenshannon(a, b))\n"
        "print('scipy.stats' in sys.modules, 'scipy.spatial' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-1] == "False False"
    assert all(np.isfinite(float(v)) for v in out[0].split())


# Adversarial counts: bins only one sample has, one value, ties of shares, tiny and huge
# samples (p-values that underflow), the reference 1 / 10 / 1000 times the window.
ODD_COUNTS = [
    ([5, 0, 3], [0, 4, 3]),  # a bin only the window has, one only the reference has
    ([10, 0, 0], [0, 0, 7]),  # nothing in common
    ([0, 50, 0], [0, 50, 0]),  # one value in both
    ([1, 1], [2, 0]),  # tiny
    ([3, 1, 2], [300, 100, 200]),  # same shares, 100 times the rows
    ([400_000, 600_000, 0], [600_000, 400_000, 1]),  # p-value underflows to 0
    ([0, 30, 20, 0], [1, 30, 20, 0]),  # one value out of the reference's range
]


@pytest.mark.parametrize(("ref", "cur"), ODD_COUNTS)
def test_chisquare_is_scipys_two_sample_test_of_homogeneity(ref, cur) -> None:
    ref, cur = np.array(ref, float), np.array(cur, float)
    used = (ref + cur) > 0
    got = stattests.chisquare(ref, cur)
    if used.sum() < 2:
        assert got == 1.0
        return
    table = np.array([ref, cur])[:, used]
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-300)
    if len(table[0]) == 2:  # two bins: the z-test squared is this chi-squared
        assert stattests.z_test(table[0], table[1]) == pytest.approx(got, rel=1e-9, abs=1e-300)


def test_chisquare_of_two_samples_of_one_distribution_alarms_at_its_level() -> None:
    """A window 10 times the reference's size, same distribution: drift (p < 0.05) in
    about 5% of windows. The goodness-of-fit test against the reference's shares (which
    takes a sample for the truth) alarmed in 78%."""
    rng = np.random.default_rng(11)
    shares = [0.5, 0.3, 0.2]
    trials = 1000
    alarms = sum(
        stattests.chisquare(
            rng.multinomial(300, shares).astype(float), rng.multinomial(3000, shares).astype(float)
        )
        < 0.05
        for _ in range(trials)
    )
    assert 0.03 <= alarms / trials <= 0.07  # binomial 99.9% band around 0.05
    # and it still sees a real change: shares moved by 10 points
    moved = [0.4, 0.3, 0.3]
    seen = sum(
        stattests.chisquare(
            rng.multinomial(300, shares).astype(float), rng.multinomial(3000, moved).astype(float)
        )
        < 0.05
        for _ in range(200)
    )
    assert seen / 200 > 0.9


def test_no_rows_gives_no_verdict_and_directions_of_thresholds() -> None:
    empty, some = np.zeros(3), np.array([1.0, 2, 3])
    for test in (stattests.ks, stattests.chisquare, stattests.jensenshannon, stattests.psi):
        assert np.isnan(test(some, empty)) and np.isnan(test(empty, some))
    assert stattests.verdict("chisquare", 0.0).drifted  # an underflowed p-value drifts
    assert stattests.verdict("chisquare", 0.05).drifted is False  # p < alpha, strictly
    assert stattests.verdict("jensenshannon", 0.1).drifted  # distance >= threshold
    # identical samples: p = 1, distances 0
    assert stattests.chisquare(some, some * 7) == pytest.approx(1.0)
    assert stattests.jensenshannon(some, some * 7) == pytest.approx(0.0, abs=1e-9)
    assert stattests.psi(some, some * 7) == pytest.approx(0.0, abs=1e-12)
