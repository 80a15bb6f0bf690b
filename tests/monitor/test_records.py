"""Reading monitored rows from the audit log: a period is read back to its start and no
further, whichever model the older records are of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shipml.monitor.records import audit_batches


class _Log:
    """The audit log's scan, newest first, counting the records it hands out."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records, self.read = records, 0

    def scan(self, kind: str, *, newest_first: bool = False):
        for record in self.records if kind == "prediction" else []:
            self.read += 1
            yield record


def _prediction(model: str, when: datetime, i: int) -> dict[str, Any]:
    return {
        "kind": "prediction",
        "request_id": f"{model}-{i}",
        "model": model,
        "version": "1",
        "time": when.isoformat(),
        "input": {"dataframe_records": [{"island": "Biscoe"}]},
        "output": {"label": ["Adelie"]},
    }


def test_the_period_ends_at_the_first_older_record_of_any_model(monitored_package):
    now = datetime.now(UTC)
    recent = [_prediction("penguins", now - timedelta(minutes=i), i) for i in range(3)]
    # a month of another model's traffic before the period: never read
    older = [_prediction("other", now - timedelta(days=1, minutes=i), i) for i in range(5000)]
    log = _Log(recent + older)
    since = now - timedelta(hours=1)
    batches = list(audit_batches(log, monitored_package, "penguins", "1", since=since))
    assert sum(b.rows for b in batches) == 3
    assert log.read <= len(recent) + 1, log.read


def test_rows_logged_without_their_inputs_count_for_the_predictions_only(monitored_package):
    """With ``[audit] store_inputs = false`` a record keeps the body's digest: its rows
    were counted as missing values, so every feature was "100% missing", a breach."""
    from shipml.monitor import monitor_rows

    now = datetime.now(UTC)
    records = [_prediction("penguins", now, i) for i in range(120)]
    for record in records[::2]:
        record["input"] = {"sha256": "ab" * 32}
    batches = audit_batches(_Log(records), monitored_package, "penguins", "1")
    result = monitor_rows(monitored_package, batches, model="penguins", version="1", source="test")
    assert result.rows == 120
    island = next(f for f in result.drift.features if f.name == "island")
    assert island.rows == 60 and island.missing_share == 0.0
    assert not any(b.startswith("island:") for b in result.breaches), result.breaches
