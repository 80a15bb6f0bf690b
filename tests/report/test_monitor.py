"""The monitoring report opens offline in Chromium with its charts drawn: every chart
has marks, the page makes no request anywhere, logs no error, and text from the data
(category values, feature names) is shown as text, never run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shipml.monitor import monitor_rows
from shipml.monitor.records import file_batches
from shipml.report.monitor import render
from tests.monitor.conftest import ARTIFACTS, drifted, holdout_rows, look_at, monitor_file

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

    result = monitor_file(monitored_package, data, window=WindowSpec.parse("86"))
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


def widened(result: dict, n: int) -> dict:
    """``result`` (a monitoring pass's dict) as if the model had ``n`` features."""
    import copy

    wide = copy.deepcopy(result)
    base = wide["drift"]["features"]
    wide["drift"]["features"] = [
        dict(copy.deepcopy(base[i % len(base)]), name=f"{base[i % len(base)]['name']}_{i}")
        for i in range(n)
    ]
    for w in wide["windows"]:
        w["features"] = {
            f["name"]: w["features"][f["name"].rsplit("_", 1)[0]] for f in wide["drift"]["features"]
        }
    return wide


def test_a_model_of_many_features_draws_bounded_pages(monitored_package, tmp_path: Path):
    """One chart per feature, one line per feature: 5,000 features took minutes to draw a
    monitor.html of 100+ MB, and the dashboard as long at every view. The most drifted
    are drawn, the tables keep every feature."""
    from shipml.monitor import WindowSpec
    from shipml.report import dashboard
    from shipml.report.monitor import MAX_CHARTS, MAX_SERIES

    frame, labels = holdout_rows(monitored_package, repeat=2)
    moved = drifted(frame)
    moved[monitored_package.label] = labels
    data = tmp_path / "rows.parquet"
    moved.to_parquet(data)
    result = monitor_file(monitored_package, data, window=WindowSpec.parse("86")).to_dict()
    wide = widened(result, 5 * MAX_CHARTS)  # more drifted features than charts
    html = render(wide)
    features = 5 * MAX_CHARTS
    assert html.count("<svg") <= MAX_CHARTS + 1 + 3  # histograms, predictions, over time
    assert html.count("<svg") == html.count('class="chart"')
    drawn = [f["name"] for f in wide["drift"]["features"] if f'data-feature="{f["name"]}"' in html]
    drifted_names = [f["name"] for f in wide["drift"]["features"] if f["drifted"]]
    assert len(drifted_names) > MAX_CHARTS
    assert drawn == drifted_names[:MAX_CHARTS]  # the drifted first
    assert f"{features - MAX_CHARTS} more features" in html
    assert f"{features - MAX_SERIES} more features" in html  # lines over time
    for f in wide["drift"]["features"]:  # every feature still in the tables
        assert f"<td>{f['name']}</td>" in html
    overview = {
        "project": "p",
        "time": "now",
        "models": [],
        "rollout": {"error": "no gateway", "url": "-"},
        "monitor": wide,
        "predictions": {"error": "no audit log", "rows": []},
    }
    page = dashboard.render(overview)
    assert page.count("<svg") <= 1 + MAX_SERIES + 1  # statistics, drifted, quality
    assert f"and {len(drifted_names) - MAX_CHARTS} more" in page
