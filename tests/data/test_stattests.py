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
        known = ref > 0
        observed = cur[known]
        expected = stattests.shares(ref[known]) * observed.sum()
        assert stattests.chisquare(ref, cur) == float(stats.chisquare(observed, expected).pvalue)
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
