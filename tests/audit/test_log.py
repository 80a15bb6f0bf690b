"""The writer: group commit, unique request ids, checkpoints on a cadence, start-up from
a frontier, adopting a dead writer's tail and refusing a forged one, shared logs."""

import asyncio
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
import zstandard

from shipml.audit import AuditLog, exact
from shipml.audit.merkle import Frontier, leaf_hash, root
from shipml.errors import AuditError, DuplicateRecord
from tests.audit.helpers import EVERY, INTERVAL, LogFolder, record


@pytest.fixture
def folder(tmp_path) -> LogFolder:
    return LogFolder(tmp_path / "log", set())


def test_frontier_matches_rfc6962_root_and_restores():
    leaves = [leaf_hash(bytes([i])) for i in range(13)]
    frontier = Frontier()
    for i, leaf in enumerate(leaves):
        frontier.append(leaf)
        assert frontier.root() == root(leaves[: i + 1])
        again = Frontier.restore(frontier.size, frontier.saved())
        assert again.root() == frontier.root()
    with pytest.raises(ValueError):
        Frontier.restore(13, b"\0" * 32)  # 13 leaves need three subtree roots


def test_group_commit_refuses_only_the_duplicate(folder):
    log = folder.writer()

    async def many():
        jobs = [log.append_async(record(i)) for i in range(300)]
        jobs.append(log.append_async(record(7)))  # a duplicate inside the same commit
        return await asyncio.gather(*jobs, return_exceptions=True)

    outcome = asyncio.run(many())
    assert sorted(outcome[:300]) == list(range(300))
    assert isinstance(outcome[300], DuplicateRecord) and "'r7'" in outcome[300].message
    with pytest.raises(DuplicateRecord):
        log.append(record(12))  # already in the log
    # the same id answered by another variant (a shadow) is a distinct record
    assert log.append({**record(12), "variant": "challenger"}) == 300
    log.close()
    reader = AuditLog(folder.db, writer=False)
    assert [r["variant"] for r in reader.find("r12")] == ["direct", "challenger"]
    assert folder.verify().ok


def test_requests_a_few_loop_turns_apart_share_one_commit(folder):
    """process mode: a commit waits while each turn of the event loop adds a record (the
    requests being served alongside), and no longer once a turn adds none."""
    log = folder.writer()

    async def request(i: int, turns: int) -> int:
        for _ in range(turns):  # its record reaches the log `turns` turns late
            await asyncio.sleep(0)
        return await log.append_async(record(i))

    async def served() -> list[int]:
        together = [request(i, i) for i in range(4)]  # one more record every turn
        seqs = await asyncio.gather(*together)
        return [*seqs, await request(9, 0)]  # alone, once the others are answered

    assert asyncio.run(served()) == [0, 1, 2, 3, 4]
    log.close()
    reader = AuditLog(folder.db, writer=False)
    times = [reader.find(f"r{i}")[0]["time"] for i in (0, 1, 2, 3, 9)]
    assert len(set(times[:4])) == 1  # one commit, one time
    assert times[4] != times[0]  # the next request is not held for company
    assert folder.verify().ok


def test_a_record_never_turns_a_value_into_null(folder):
    log = folder.writer()
    with pytest.raises(AuditError, match="NaN or infinity"):
        log.append({"kind": "prediction", "request_id": "x", "input": [float("inf")]})
    with pytest.raises(AuditError, match="NaN or infinity"):
        log.append({"kind": "prediction", "request_id": "y", "input": np.array([np.nan])})
    values = np.array([[1.5, np.nan, np.inf, -np.inf, 3.4e38]], dtype=np.float32)
    log.append({"kind": "prediction", "request_id": "z", "input": exact(values)})
    log.close()
    (stored,) = AuditLog(folder.db, writer=False).find("z")
    assert stored["input"] == [[1.5, "NaN", "Infinity", "-Infinity", 3.4e38]]
    assert np.float32(stored["input"][0][4]) == values[0, 4]  # float32 round-trips exactly


def test_checkpoints_follow_the_clock_while_records_arrive(folder):
    log = folder.writer()
    log.append(record(1))
    deadline = time.monotonic() + 5
    while log.signed_size < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.signed_size == 1  # signed within the interval, with no more records
    reader = AuditLog(folder.db, writer=False)
    assert max(cp.size for cp in reader.checkpoints()) == 1
    head = (folder.checkpoints / "head.json").read_text()
    assert '"size": 1' in head
    log.close()
    states = [(cp.size, cp.state) for cp in AuditLog(folder.db, writer=False).checkpoints()]
    assert states[0] == (0, "start") and states[-1] == (1, "closed")


def test_start_up_reads_a_frontier_not_the_log(folder):
    log = folder.writer()
    for start in range(0, 1000, 100):
        log.append_many([record(i) for i in range(start, start + 100)])
    log.close()
    db = folder.sql()
    db.execute("UPDATE entries SET entry = x'00' WHERE seq = 5")  # an old record, damaged
    db.close()
    again = folder.writer()  # opens: reads the newest checkpoint, not record 5
    assert again.size == 1000
    again.append(record(1000))
    again.close()
    assert "record 5" in folder.verify().problem  # verify reads everything


def test_a_dead_writers_tail_is_adopted_and_a_forged_one_refused(folder, tmp_path):
    from tests.audit.conftest import kill_under_load

    folder.root.mkdir()
    acked = kill_under_load(folder, "dead", acked_at_least=200)
    log = folder.writer()  # adopts the unsigned tail: signs a checkpoint over it
    assert log.signed_size == log.size >= len(acked)
    log.close()
    assert folder.verify().unsigned == 0
    # a record appended after that clean stop, posing as the writer that closed the log

    from shipml.audit.codec import canonical

    reader = AuditLog(folder.db, writer=False)
    last = orjson.loads(next(iter(reader.rows(reader_size(reader) - 1))).raw)
    forged = canonical({**record(0, "forged-"), "seq": last["seq"] + 1, **_keep(last)})
    db = folder.sql()
    db.execute(
        "INSERT INTO entries VALUES (?, ?, ?, 0, 'prediction', 'forged-0', 'direct')",
        (last["seq"] + 1, leaf_hash(forged), zstandard.ZstdCompressor().compress(forged)),
    )
    db.close()
    with pytest.raises(AuditError, match="appended after its writer"):
        folder.writer()  # will not sign over it
    assert "appended" in folder.verify().problem


def test_a_live_writer_ended_by_a_new_one_goes_on_as_a_new_session(folder):
    first = folder.writer()
    first.append(record(1))
    old = first.session
    second = folder.writer()  # starts: ends every open session, the live one included
    second.append(record(2))
    first.append(record(3))  # notices, and writes as a new session
    assert first.session != old
    second.close()
    first.close()
    result = folder.verify()
    assert result.ok and result.records == 3, result.problem


def test_a_start_that_does_not_end_an_open_writer_is_caught(folder):
    log = folder.writer()
    log.append(record(1))
    while log.signed_size < 1:  # its cadence checkpoint is in
        time.sleep(0.02)
    db = folder.sql()
    db.execute("DELETE FROM sessions")  # hide the open writer from the next start
    db.close()
    folder.writer().close()
    log.close()
    assert "did not end the writer" in folder.verify().problem


def reader_size(reader: AuditLog) -> int:
    return reader.db.execute("SELECT MAX(seq) FROM entries").fetchone()[0] + 1


def _keep(last: dict) -> dict:
    return {"time": last["time"], "w": last["w"]}


def test_a_replaced_key_is_refused_by_the_writer(folder):
    from shipml.audit import key_fingerprint

    log = folder.writer()
    pin = key_fingerprint(folder.key)
    log.close()
    folder.key.unlink()
    with pytest.raises(AuditError, match="is not the pinned key"):
        folder.writer(key_fingerprint=pin)  # a new key was made: not the pinned one


def test_several_processes_share_one_tree(folder):
    folder.root.mkdir()
    script = (
        "import sys; from pathlib import Path\n"
        "from tests.audit.helpers import LogFolder, record\n"
        "log = LogFolder(Path(sys.argv[1]), set()).writer()\n"
        "for i in range(150):\n"
        "    log.append(record(i, sys.argv[2]))\n"
        "log.close()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(folder.root), name])
        for name in ("champion-", "challenger-", "gateway-")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    result = folder.verify()
    assert result.ok and result.records == 450, result.problem
    assert result.checkpoints >= 450 // EVERY


def test_power_durability_commits_on_a_writer_thread(folder):
    log = folder.writer(durability="power", commit_window_ms=2)

    async def many():
        return await asyncio.gather(*(log.append_async(record(i)) for i in range(200)))

    assert sorted(asyncio.run(many())) == list(range(200))
    committer = log._committer
    assert committer is not None and committer._thread is not None
    assert committer._thread.is_alive()
    log.close()
    assert folder.verify().ok


def test_settings_are_checked(folder):
    with pytest.raises(AuditError, match="unknown audit durability 'fast'"):
        folder.writer(durability="fast")
    assert INTERVAL < 1  # the tests' cadence is short; the default is 1 s


def test_a_large_payload_is_stored_compressed_and_a_bomb_is_refused(folder):
    rows = np.random.default_rng(0).normal(size=(20_000, 30)).astype(np.float32)
    log = folder.writer()
    log.append({"kind": "prediction", "request_id": "big", "input": {"matrix": rows}})
    log.close()
    raw = len(orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY))
    db = folder.sql()
    (stored,) = db.execute("SELECT length(entry) FROM entries WHERE seq = 0").fetchone()
    assert raw > 5_000_000 and stored < 0.6 * raw
    # a forged frame that claims 4 GiB: refused before anything is allocated
    big = zstandard.ZstdCompressor().compressobj(size=4 << 30)
    forged = big.compress(b"x" * 100) + big.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    assert zstandard.get_frame_parameters(forged).content_size == 4 << 30
    db.execute("UPDATE entries SET entry = ?, dict = 0 WHERE seq = 0", (forged,))
    db.close()
    assert "cannot be decompressed" in folder.verify().problem
