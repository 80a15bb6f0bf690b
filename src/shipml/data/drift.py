"""Streaming drift statistics: a window of rows, counted against a reference profile.

A ``Reference`` is read from a profile (``shipml.data.profile``: per-column histogram,
categories, missing values) — the one every model package carries. A ``Window`` counts
rows into the reference's bins as they stream by (numeric: one bin below the range,
the reference's bins, one above; categorical: the reference's categories, ``other``
when the reference lumped rare ones, and ``unseen`` values), keeping per feature only
fixed-size counts and sums: memory does not grow with the rows. Windows merge, so a
rolling window is a ring of them. ``compare`` runs the tests of ``shipml.data.stattests``
on the counts and returns every statistic, threshold and verdict.

The model server (live metrics) and the monitor (`shipml monitor`) both use this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipml.data import stattests
from shipml.data.reference import OTHER, FeatureReference, Reference, reference_of
from shipml.data.stattests import TestResult
from shipml.data.window import MAX_UNSEEN, Counts, Window

__all__ = [
    "MAX_UNSEEN",
    "OTHER",
    "Counts",
    "DriftResult",
    "FeatureDrift",
    "FeatureReference",
    "Reference",
    "Settings",
    "Window",
    "compare",
    "judge",
    "method_for",
    "reference_of",
]


@dataclass(frozen=True)
class Settings:
    """How features are judged (``[monitor]`` in shipml.toml, see MonitorSection)."""

    methods: Mapping[str, str] = field(default_factory=dict)  # feature -> method ("auto")
    thresholds: Mapping[str, float] = field(default_factory=dict)  # feature -> threshold
    disabled: frozenset[str] = frozenset()
    drift_share: float = 0.5
    large_reference: int = 1000
    min_rows: int = 30
    max_missing_increase: float = 0.1
    max_unseen_share: float = 0.05
    max_out_of_range_share: float = 0.1

    @classmethod
    def from_config(cls, section: Any) -> Settings:
        """From a ``MonitorSection`` (the prediction's spec is keyed ``__prediction__``)."""
        specs = {**section.features, PREDICTION: section.prediction}
        return cls(
            methods={k: s.method for k, s in specs.items() if s.method != "auto"},
            thresholds={k: s.threshold for k, s in specs.items() if s.threshold is not None},
            disabled=frozenset(k for k, s in specs.items() if not s.enabled),
            drift_share=section.drift_share,
            large_reference=section.large_reference,
            min_rows=section.min_rows,
            max_missing_increase=section.max_missing_increase,
            max_unseen_share=section.max_unseen_share,
            max_out_of_range_share=section.max_out_of_range_share,
        )


PREDICTION = "__prediction__"


@dataclass
class FeatureDrift:
    name: str
    numeric: bool
    rows: int
    judged: bool  # enough rows and not disabled
    test: TestResult | None
    psi: TestResult | None
    missing_share: float
    reference_missing_share: float
    out_of_range_share: float
    unseen_share: float
    unseen: dict[str, int]
    flags: list[str]  # what breached: drift, missing, unseen, out_of_range
    labels: list[str]  # bin names
    reference_shares: list[float]
    current_shares: list[float]
    mean: float | None = None

    @property
    def drifted(self) -> bool:
        return "drift" in self.flags

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("test", "psi")}
        out["drifted"] = self.drifted
        out["test"] = self.test.to_dict() if self.test else None
        out["psi"] = self.psi.to_dict() if self.psi else None
        return out


def method_for(ref: FeatureReference, settings: Settings, key: str) -> str:
    """The configured method of a feature, else the default for its reference."""
    return settings.methods.get(key) or stattests.default_method(
        ref.numeric, ref.rows, ref.distinct, settings.large_reference
    )


def judge(ref: FeatureReference, counts: Counts, settings: Settings, key: str) -> FeatureDrift:
    """Every test and check of one feature."""
    bins = counts.bins
    unseen_total = sum(counts.unseen.values())
    present = int(bins.sum()) + unseen_total
    total = present + counts.missing
    judged = key not in settings.disabled and present >= settings.min_rows and ref.rows > 0
    test = psi = None
    if judged:
        method = method_for(ref, settings, key)
        test = stattests.verdict(
            method, _statistic(method, ref, counts), settings.thresholds.get(key)
        )
        psi = stattests.verdict("psi", stattests.psi(*_tested(ref, counts)))
    missing_share = counts.missing / total if total else 0.0
    outside = int(bins[0] + bins[-1]) if ref.numeric else 0
    out_share = outside / present if present else 0.0
    unseen_share = unseen_total / present if present else 0.0
    flags = []
    if test is not None and test.drifted:
        flags.append("drift")
    if total >= settings.min_rows:
        if missing_share - ref.missing_share > settings.max_missing_increase:
            flags.append("missing")
        if unseen_share > settings.max_unseen_share:
            flags.append("unseen")
        if out_share > settings.max_out_of_range_share:
            flags.append("out_of_range")
    mean = counts.sum / present if ref.numeric and present else None
    return FeatureDrift(
        name=ref.name,
        numeric=ref.numeric,
        rows=total,
        judged=judged,
        test=test,
        psi=psi,
        missing_share=missing_share,
        reference_missing_share=ref.missing_share,
        out_of_range_share=out_share,
        unseen_share=unseen_share,
        unseen=dict(sorted(counts.unseen.items(), key=lambda kv: -kv[1])[:20]),
        flags=flags,
        labels=ref.labels,
        reference_shares=stattests.shares(ref.counts).tolist(),
        current_shares=stattests.shares(bins).tolist(),
        mean=mean,
    )


def _tested(ref: FeatureReference, counts: Counts) -> tuple[np.ndarray, np.ndarray]:
    """The bins a test compares. A categorical feature's unseen values are one bin more
    (the reference has none there), as Evidently counts every category either sample
    has: a window of new categories is drift, not an empty window (NaN, "no drift")."""
    if ref.numeric:
        return ref.counts, counts.bins
    return np.append(ref.counts, 0), np.append(counts.bins, sum(counts.unseen.values()))


def _statistic(method: str, ref: FeatureReference, counts: Counts) -> float:
    r, c = _tested(ref, counts)
    if method in stattests.NUMERIC_ONLY and not ref.numeric:
        method = "chisquare"  # a numeric method configured for a category: the safe test
    if method == "ks":
        return stattests.ks(r, c)
    if method == "wasserstein":
        assert ref.edges is not None
        return stattests.wasserstein(r, c, ref.edges, tuple(counts.outside), ref.std or 0.0)  # type: ignore[arg-type]
    if method == "z":
        keep = (r + c) > 0
        if ref.numeric or keep.sum() != 2:
            return stattests.chisquare(r, c)
        return stattests.z_test(r[keep], c[keep])
    if method == "chisquare":
        return stattests.chisquare(r, c)
    if method == "jensenshannon":
        return stattests.jensenshannon(r, c)
    return stattests.psi(r, c)


@dataclass
class DriftResult:
    rows: int
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    drift_share: float  # of judged features that drifted
    threshold: float

    @property
    def dataset_drift(self) -> bool:
        return any(f.judged for f in self.features) and self.drift_share >= self.threshold

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "drift_share_threshold": self.threshold,
            "drifted_features": self.drifted,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
        }


def compare(window: Window, settings: Settings | None = None) -> DriftResult:
    """Every feature's and the predictions' tests, and the dataset's verdict."""
    settings = settings or Settings()
    ref = window.reference
    features = [judge(ref.features[n], c, settings, n) for n, c in window.features.items()]
    prediction = None
    if ref.prediction is not None and window.prediction is not None:
        prediction = judge(ref.prediction, window.prediction, settings, PREDICTION)
    judged = [f for f in features if f.judged]
    share = sum(f.drifted for f in judged) / len(judged) if judged else 0.0
    return DriftResult(window.rows, features, prediction, share, settings.drift_share)
