"""``monitor.json`` is standard JSON whatever the rows held."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipml.monitor import monitor_rows
from shipml.monitor.records import Batch
from shipml.project.monitor import RESULT, write_result


def test_rows_of_huge_finite_numbers_give_null_not_a_crash(monitored_package, tmp_path: Path):
    """1e308 is a finite number a client may send and the audit log keeps; the mean of
    100 of them overflows (json.dumps raised ValueError: a traceback, no report)."""
    names = monitored_package.signature.names
    numeric = {"island": "Biscoe", "sex": "male"}
    n = 100
    columns = {k: [numeric.get(k, 1e308)] * n for k in names}
    result = monitor_rows(
        monitored_package,
        [Batch(columns, ["Adelie"] * n)],
        model="penguins",
        version="1",
        source="test",
    )
    folder = write_result(result, tmp_path / "out")
    data = json.loads(
        (folder / RESULT).read_text(), parse_constant=lambda c: pytest.fail(f"JSON has {c}")
    )
    means = {f["name"]: f["mean"] for f in data["drift"]["features"]}
    assert means["bill_length_mm"] is None and means["island"] is None
    assert "bill_length_mm" in (folder / "monitor.html").read_text()
