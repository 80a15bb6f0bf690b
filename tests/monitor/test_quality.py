"""Quality per slice: one slice per category the reference knows, whatever values the
clients send (a slice is a table row and its metrics)."""

from __future__ import annotations

from pathlib import Path

from shipml.monitor import monitor_rows
from shipml.monitor.quality import MAX_GROUPS, UNSEEN, SliceQuality, Slicer
from shipml.monitor.records import file_batches
from tests.monitor.conftest import holdout_rows


def test_values_the_reference_never_saw_are_one_slice(monitored_package, tmp_path: Path):
    frame, labels = holdout_rows(monitored_package, repeat=20)
    known = set(frame["island"].dropna())
    frame.loc[frame.index[::2], "island"] = [f"id-{i}" for i in range(len(frame[::2]))]
    frame[monitored_package.label] = labels
    data = tmp_path / "rows.parquet"
    frame.to_parquet(data)
    result = monitor_rows(
        monitored_package,
        file_batches(data, monitored_package),
        model="penguins",
        version="1",
        source="file",
        slices=["island"],
    )
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
