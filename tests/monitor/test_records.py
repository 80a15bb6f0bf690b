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
