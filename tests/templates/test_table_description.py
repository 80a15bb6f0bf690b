"""templates/table_description.py: which columns of a table are features, and why the
others are not."""

from __future__ import annotations

import pandas as pd
import pytest

from shipml.errors import ProjectError
from shipml.templates.table_description import describe


def test_dates_as_text_and_row_numbers_are_not_features() -> None:
    """A CSV holds dates as text: a category per day is a feature no future row shares;
    a column counting the rows identifies them. Both are left out, and said why."""
    rows = 90
    frame = pd.DataFrame(
        {
            "id": range(1, rows + 1),
            "day": [f"2024-01-{1 + i % 28:02d}" for i in range(rows)],
            "stamp": [f"2024/02/{1 + i % 9:02d} 10:{i % 60:02d}:00" for i in range(rows)],
            "eu": [f"{1 + i % 28:02d}.03.2024" for i in range(rows)],
            "count": [i % 10 for i in range(rows)],  # integers, not one per row
            "shuffled": list(range(rows, 0, -1)),  # a running number in any order
            "code": ["2024-01-01", "n/a"] * (rows // 2),  # not a date in every row
            "y": ["yes", "no", "no"] * (rows // 3),
        }
    )
    info = describe(frame, "y", None)
    dropped = info["dropped"]
    assert {c: dropped[c].split(" (")[0] for c in ("day", "stamp", "eu")} == {
        "day": "a date",
        "stamp": "a date",
        "eu": "a date",
    }
    assert dropped["id"] == "an identifier (every row's own number, 1 to 90)"
    assert dropped["shuffled"].startswith("an identifier")
    assert info["numeric"] == ["count"] and info["categorical"] == ["code"]


def test_a_column_holding_infinity_is_refused_with_where() -> None:
    frame = pd.DataFrame({"x": [float(i) for i in range(60)], "y": [1.0 * i for i in range(60)]})
    for col in ("x", "y"):  # a feature or the target
        bad = frame.copy()
        bad.loc[[4, 9], col] = [float("inf"), float("-inf")]
        with pytest.raises(ProjectError, match=rf"column '{col}' holds infinity in 2 row\(s\)"):
            describe(bad, "y", None)
    assert describe(frame, "y", None)["task"] == "regression"
