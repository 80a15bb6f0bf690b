"""Drift tests on binned data: a reference's bin counts against a window's.

Every test works from counts over the same bins (numeric features: the reference
histogram's bins plus one below and one above its range; categorical features: the
categories), so a window is never held in memory. How each test is chosen, and why
(the sample-size logic of Evidently's defaults), is in docs/monitoring.md.

- ``ks``: two-sample Kolmogorov–Smirnov. The statistic is the largest gap between the
  two CDFs at the bin edges (a lower bound of the exact one: binning can only hide
  drift, never invent it); the p-value is the Kolmogorov distribution's for the
  effective size n·m/(n+m), as scipy's ``ks_2samp(method="asymp")``. Drift: p < threshold.
- ``wasserstein``: the first Wasserstein distance (the area between the CDFs), divided
  by the reference's standard deviation. Inside a bin the CDFs are linear; below and
  above the reference's range the area is exact, from the sum of the values there.
  Drift: distance >= threshold.
- ``chisquare``: Pearson's chi-squared test of homogeneity of the two samples' counts
  (scipy's ``chi2_contingency``, no continuity correction). ``z``: the two-proportion
  z-test, for two categories (the same p-value: z squared is that chi-squared). Drift:
  p < threshold.
- ``jensenshannon``: Jensen–Shannon distance of the two distributions (scipy, natural
  log). ``psi``: the population stability index, sum of (c - r)·ln(c / r). Empty bins
  get a tiny share, as Evidently does. Drift: value >= threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_THRESHOLDS = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
P_VALUE = frozenset({"ks", "chisquare", "z"})
NUMERIC_ONLY = frozenset({"ks", "wasserstein"})
METHODS = tuple(DEFAULT_THRESHOLDS)


@dataclass(frozen=True)
class TestResult:
    """One test of one feature: its statistic, the threshold and the verdict."""

    __test__ = False  # not a pytest test class

    method: str
    statistic: float
    threshold: float
    drifted: bool

    @property
    def kind(self) -> str:
        return "p_value" if self.method in P_VALUE else "distance"

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "kind": self.kind,
            "statistic": _finite(self.statistic),
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else (1e308 if math.isinf(value) else float(value))


def verdict(method: str, statistic: float, threshold: float | None = None) -> TestResult:
    limit = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
    if math.isnan(statistic):
        drifted = False
    elif method in P_VALUE:
        drifted = statistic < limit
    else:
        drifted = statistic >= limit
    return TestResult(method, float(statistic), limit, drifted)


def shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def _filled(p: np.ndarray) -> np.ndarray:
    """Empty bins get a tiny share (Evidently's rule), so logarithms stay finite."""
    p = p.astype(float).copy()
    nonzero = p[p > 0]
    if not len(nonzero):
        return p
    low = nonzero.min()
    p[p == 0] = low / 1e6 if low <= 1e-4 else 1e-4
    return p


def ks(ref: np.ndarray, cur: np.ndarray) -> float:
    """p-value of the binned two-sample Kolmogorov–Smirnov test."""
    n, m = ref.sum(), cur.sum()
    if n == 0 or m == 0:
        return math.nan
    gap = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m)))
    effective = max(1, round(n * m / (n + m)))
    return float(_kolmogn()(effective, gap, cdf=False))


_KOLMOGN: list[Callable[..., Any]] = []


def _kolmogn() -> Callable[..., Any]:
    """scipy's exact distribution of the two-sided one-sample KS statistic (what
    ``scipy.stats.kstwo.sf(d, n)`` computes: ``kolmogn(n, d, cdf=False)``), without
    importing ``scipy.stats``: that package costs a model server about 47 MiB of resident
    memory (against 14 MiB for ``scipy.special``, all this module needs otherwise).

    ``kolmogn`` lives in ``scipy/stats/_ksstats.py``, which needs only numpy and
    ``scipy.special`` but for one import (a derivative for the density, unused here);
    that file is compiled from scipy's own source with that import left out. Should a
    scipy release move it, ``scipy.stats.kstwo`` is used instead: same values, more
    memory. tests/data/test_stattests.py checks both give the same p-values."""
    if not _KOLMOGN:
        import scipy

        path = Path(scipy.__file__).parent / "stats" / "_ksstats.py"
        unused = "from scipy.stats._finite_differences import _derivative"
        try:
            source = path.read_text(encoding="utf-8")
            if source.count(unused) != 1:
                raise LookupError(unused)
            code = compile(source.replace(unused, "_derivative = None"), str(path), "exec")
            namespace: dict[str, Any] = {"__name__": "shipml.data._scipy_ksstats"}
            exec(code, namespace)  # scipy's installed source, not outside input
            _KOLMOGN.append(namespace["kolmogn"])
        except (OSError, LookupError, SyntaxError, ImportError):
            from scipy.stats import kstwo

            _KOLMOGN.append(lambda n, x, cdf=False: kstwo.sf(x, n))
    return _KOLMOGN[0]


def wasserstein(
    ref: np.ndarray,
    cur: np.ndarray,
    edges: np.ndarray,
    outside: tuple[float, float],
    std: float,
) -> float:
    """Wasserstein distance over ``edges`` (bins [under, *inside, over]) divided by the
    reference's ``std``. ``outside``: the sums of the window's values below and above the
    edges (the reference has none there)."""
    n, m = ref.sum(), cur.sum()
    if n == 0 or m == 0:
        return math.nan
    inside_ref, inside_cur = ref[1:-1] / n, cur[1:-1] / m
    under = cur[0] / m
    # CDF gaps at each inner edge: F_cur includes what lies below the range.
    gap = np.concatenate([[0.0], np.cumsum(inside_ref)]) - (
        under + np.concatenate([[0.0], np.cumsum(inside_cur)])
    )
    a, b, width = gap[:-1], gap[1:], np.diff(edges)
    same = (a * b) >= 0
    total = np.abs(a) + np.abs(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = np.where(total > 0, (a * a + b * b) / (2 * total), 0.0)
    area = float(np.sum(width * np.where(same, total / 2, crossing)))
    if cur[0]:
        area += float(cur[0] * edges[0] - outside[0]) / m  # E[(e0 - X)+]
    if cur[-1]:
        area += float(outside[1] - cur[-1] * edges[-1]) / m  # E[(X - ek)+]
    return area / max(float(std or 0.0), 0.001)


def chisquare(ref: np.ndarray, cur: np.ndarray) -> float:
    """p-value of Pearson's chi-squared test that ``ref`` and ``cur`` are two samples of
    one distribution (the test of homogeneity of their 2 x k table, over the bins either
    has), computed as ``scipy.stats.chi2_contingency(correction=False)`` does.

    Both counts are samples: the reference's shares are not taken as the truth (the
    goodness-of-fit test against them raised a false alarm in 3 windows out of 4 when
    the window had 10 times the reference's rows and the same distribution). A bin only
    the window has (a value out of range, an unseen category) counts as evidence."""
    from scipy.special import chdtrc

    n, m = float(ref.sum()), float(cur.sum())
    if n == 0 or m == 0:
        return math.nan
    used = (ref + cur) > 0
    if used.sum() < 2:
        return 1.0  # one value in both: nothing differs
    r, c = ref[used].astype(float), cur[used].astype(float)
    pooled = (r + c) / (n + m)
    expected_r, expected_c = pooled * n, pooled * m
    statistic = np.sum((r - expected_r) ** 2 / expected_r + (c - expected_c) ** 2 / expected_c)
    return float(chdtrc(float(used.sum() - 1), statistic))


def z_test(ref: np.ndarray, cur: np.ndarray) -> float:
    """p-value of the two-proportion z-test (first bin against the rest)."""
    from scipy.special import ndtr

    n, m = float(ref.sum()), float(cur.sum())
    if n == 0 or m == 0:
        return math.nan
    p1, p2 = ref[0] / n, cur[0] / m
    pooled = (ref[0] + cur[0]) / (n + m)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    if spread == 0:
        return 1.0 if p1 == p2 else 0.0
    return float(2 * ndtr(-abs((p1 - p2) / spread)))  # scipy.stats.norm.sf


def jensenshannon(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen–Shannon distance (natural log), as ``scipy.spatial.distance.jensenshannon``."""
    from scipy.special import rel_entr

    if ref.sum() == 0 or cur.sum() == 0:
        return math.nan
    p, q = shares(ref), shares(cur)
    p, q = p / np.sum(p), q / np.sum(q)
    middle = (p + q) / 2.0
    return float(np.sqrt((np.sum(rel_entr(p, middle)) + np.sum(rel_entr(q, middle))) / 2.0))


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    if ref.sum() == 0 or cur.sum() == 0:
        return math.nan
    r, c = _filled(shares(ref)), _filled(shares(cur))
    return float(np.sum((c - r) * np.log(c / r)))


def warm_up() -> None:
    """Import what the tests use (``scipy.special``, scipy's KS distribution), ahead of
    the first comparison (paid once per process)."""
    import scipy.special  # noqa: F401

    _kolmogn()


def default_method(numeric: bool, reference_rows: int, distinct: int, large: int) -> str:
    """Evidently's choice by the reference's size: p-value tests for small references,
    distances for large ones; few distinct values are treated as categories."""
    if reference_rows <= large:
        if numeric and distinct > 5:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    return "wasserstein" if numeric and distinct > 5 else "jensenshannon"
