"""The monitoring report opens offline in Chromium with its charts drawn: every chart
has marks, the page makes no request anywhere, logs no error, and text from the data
(category values, feature names) is shown as text, never run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shipml.monitor import monitor_rows
from shipml.monitor.records import file_batches
from shipml.report.monitor import render
from tests.monitor.conftest import ARTIFACTS, drifted, holdout_rows, look_at

NASTY = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def test_the_report_opens_offline_with_every_chart_drawn(monitored_package, tmp_path: Path):
    frame, labels = holdout_rows(monitored_package, repeat=3)
    moved = drifted(frame)
    moved.loc[moved.index[:5], "sex"] = NASTY  # an unseen category, hostile
    moved[monitored_package.label] = labels
    data = tmp_path / "rows.parquet"
    moved.to_parquet(data)
    result = monitor_rows(
        monitored_package,
        file_batches(data, monitored_package, chunk_rows=60),
        model="penguins",
        version="1",
        source=f"file {data}",
        slices=["island", "bill_length_mm"],
    )
    html = render(result.to_dict())
    assert NASTY not in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    page = tmp_path / "monitor.html"
    page.write_text(html)
    seen = look_at(page.as_uri(), ARTIFACTS / "monitor-report.png")
    assert seen["console"] == [] and seen["refused"] == []
    features = len(monitored_package.signature.names)
    assert len(seen["marks"]) == features + 1  # one histogram per feature and the predictions
    assert all(n >= 2 for n in seen["marks"]), seen["marks"]
    assert "bill_length_mm: drifted" in seen["text"] or "bill_length_mm" in seen["text"]
    assert "breach" in seen["text"]
    assert (ARTIFACTS / "monitor-report.png").stat().st_size > 10_000


def test_windows_add_drift_and_quality_over_time(monitored_package, tmp_path: Path):
    frame, labels = holdout_rows(monitored_package, repeat=4)
    halves = pd.concat([frame.iloc[: len(frame) // 2], drifted(frame.iloc[len(frame) // 2 :])])
    halves[monitored_package.label] = labels.to_numpy()
    data = tmp_path / "rows.csv"
    halves.to_csv(data, index=False)
    from shipml.monitor import WindowSpec

    result = monitor_rows(
        monitored_package,
        file_batches(data, monitored_package),
        model="penguins",
        version="1",
        source="file",
        window=WindowSpec.parse("86"),
    )
    assert [w["rows"] for w in result.windows] == [86, 86, 86, 86]
    assert [w["dataset_drift"] or bool(w["prediction_drifted"]) for w in result.windows][:2] == [
        False,
        False,
    ]
    assert all(w["features"]["bill_length_mm"]["drifted"] for w in result.windows[2:])
    assert all("accuracy" in w["quality"] for w in result.windows)
    page = tmp_path / "monitor.html"
    page.write_text(render(result.to_dict()))
    seen = look_at(page.as_uri(), ARTIFACTS / "monitor-report-windows.png")
    assert seen["console"] == [] and seen["refused"] == []
    # histograms + drift over time + drifted share over time + quality over time
    assert len(seen["marks"]) == len(monitored_package.signature.names) + 1 + 3
    assert all(n >= 2 for n in seen["marks"])
