"""Reading the log while it is written: the model server polls it for feedback labels."""

from __future__ import annotations

import pytest

from shipml.audit.database import Database
from shipml.audit.log import scan
from tests.audit.helpers import LogFolder, record


@pytest.fixture
def folder(tmp_path) -> LogFolder:
    return LogFolder(tmp_path / "log", set())


def test_the_feedback_poll_reads_feedback_not_the_whole_log(folder):
    log = folder.writer()
    log.append_many([record(i) for i in range(300)])
    log.append({"kind": "feedback", "request_id": "r7", "label": 1})  # as the gateway writes
    log.append_many([record(i) for i in range(300, 400)])
    log.close()
    db = Database(folder.db, writer=False)
    try:
        assert [(seq, r["request_id"]) for seq, r in scan(db, "feedback")] == [(300, "r7")]
        assert list(scan(db, "feedback", after=300)) == []
        assert len(list(scan(db, "prediction", after=350))) == 50
        # every few seconds for as long as the server runs: an index of the feedback
        # records, not a pass over every prediction since the last label
        (plan,) = db.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM entries WHERE kind = 'feedback' AND seq > ?",
            (-1,),
        ).fetchall()
        assert "entries_feedback" in plan[-1], plan
    finally:
        db.close()
