"""Every tamper kind is detected, after a clean stop and after SIGKILL under load.

One table, each case run against copies of two logs written for real (conftest): one
stopped cleanly (every record signed), one killed three times under load (its last
cadence unsigned, the documented tail). A tamperer here has write access to the log's
folder and knows the format; they do not have the pinned key."""

import pytest

from shipml.audit import AuditLog
from shipml.errors import AuditError
from tests.audit.helpers import LogFolder
from tests.audit.tampers import CASES, apply


def test_the_logs_as_written_verify_and_keep_every_acknowledged_record(base: LogFolder):
    result = base.verify()
    assert result.ok, result.problem
    log = AuditLog(base.db, writer=False)
    try:
        stored = {r for (r,) in log.db.execute("SELECT request_id FROM entries")}
    finally:
        log.close()
    assert base.acked and base.acked <= stored  # nothing acknowledged was lost
    # at most one cadence: a count of records, plus the commit that crossed it
    assert result.unsigned <= 2 * 50 + 16


@pytest.mark.parametrize("case", list(CASES))
def test_every_tamper_kind_is_detected(base: LogFolder, case: str, tmp_path):
    _, says = CASES[case]
    folder = base.copy(tmp_path / ("killed" if "killed" in str(base.root) else "clean"))
    apply(folder, case)
    try:
        result = folder.verify()
    except AuditError as exc:  # the database itself is not a log
        assert says in exc.message
        return
    assert not result.ok, f"{case} went unnoticed"
    assert says in result.problem, result.problem


def test_a_writer_started_after_a_clean_stop_leaves_the_log_verified(clean_log, tmp_path):
    """Its start checkpoint has the size of the last writer's closing one, and so does
    head.json, a copy of it: the head is checked after the rows of its size, not before
    the closing row (which made the closed writer look open, ended by nobody)."""
    folder = clean_log.copy(tmp_path / "log")
    writer = folder.writer()  # a server restarted, no request yet
    try:
        result = folder.verify()
    finally:
        writer.close()
    assert result.ok, result.problem
    assert folder.verify().ok
