"""Quality per slice: one slice per category the reference knows, whatever values the
clients send (a slice is a table row and its metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shipml.data.quality import Quality
from shipml.monitor.quality import MAX_GROUPS, UNSEEN, SliceQuality, Slicer, judge_quality
from tests.monitor.conftest import holdout_rows, monitor_file


def test_values_the_reference_never_saw_are_one_slice(monitored_package, tmp_path: Path):
    frame, labels = holdout_rows(monitored_package, repeat=20)
    known = set(frame["island"].dropna())
    frame.loc[frame.index[::2], "island"] = [f"id-{i}" for i in range(len(frame[::2]))]
    frame[monitored_package.label] = labels
    data = tmp_path / "rows.parquet"
    frame.to_parquet(data)
    result = monitor_file(monitored_package, data, slices=["island"])
    groups = result.quality["slices"]["island"]
    assert set(groups) <= known | {UNSEEN, "(missing)"}, sorted(groups)[:5]
    assert groups[UNSEEN]["labelled"] == len(frame[::2])
    assert sum(g["labelled"] for g in groups.values()) == len(frame)


def test_a_feature_without_a_reference_has_a_bounded_number_of_slices():
    sliced = SliceQuality([Slicer("id", None, [])], "classification")
    ids = [f"id-{i}" for i in range(5 * MAX_GROUPS)]
    sliced.add({"id": ids}, ["a"] * len(ids), ["a"] * len(ids))
    groups = sliced.to_dict()["id"]
    assert len(groups) == MAX_GROUPS + 1
    assert sum(g["labelled"] for g in groups.values()) == len(ids)


def test_a_model_as_good_as_its_holdout_rarely_breaches_by_chance():
    """A 90%-accurate model in windows of 30 labels: below the bound (0.85) in 17.5% of
    them (P[Binomial(30, 0.9) <= 25]), which breached, and with on_breach = "retrain"
    retrained on chance. A breach now also needs the loss to be unlikely by sampling
    alone (p < 0.05): 2.6% of windows (P[Binomial(30, 0.9) <= 23]). A model really 25
    points worse still breaches; alpha = 1 is the bound alone."""
    rng = np.random.default_rng(8)

    def breached(accuracy: float, alpha: float, n: int = 30, runs: int = 500) -> float:
        out = []
        for _ in range(runs):
            right = int(rng.binomial(n, accuracy))
            q = Quality("classification")
            q.add(["a"] * n, ["a"] * right + ["b"] * (n - right))
            verdicts = judge_quality(
                q, {"accuracy": 0.9}, max_drop=0.05, min_labels=30, alpha=alpha
            )
            out.append(verdicts[0]["breached"])
        return float(np.mean(out))

    assert 0.12 <= breached(0.9, alpha=1.0) <= 0.23  # the bound alone: the old rule
    assert breached(0.9, alpha=0.05) <= 0.05
    assert breached(0.65, alpha=0.05, runs=100) >= 0.9
