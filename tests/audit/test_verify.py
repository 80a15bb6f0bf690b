"""Tampering with the audit log is detected, and the first bad record is named."""

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from shipml.audit import AuditLog, verify
from shipml.audit.merkle import Frontier, leaf_hash, root


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog(
        tmp_path / "audit.db",
        signing_key=tmp_path / "key.pem",
        checkpoint_dir=tmp_path / "checkpoints",
        checkpoint_every=50,
    )
    for start in range(0, 120, 10):  # batches, as group commit writes them
        log.append_many(
            [
                {"kind": "prediction", "request_id": f"r{i}", "output": {"label": i % 3}}
                for i in range(start, start + 10)
            ]
        )
    log.checkpoint()
    return log


def check(log: AuditLog, tmp_path: Path):
    fresh = AuditLog(log.path)  # re-open: what a verifier sees
    try:
        return verify(fresh, checkpoint_dir=tmp_path / "checkpoints")
    finally:
        fresh.conn.close()


def raw_db(log: AuditLog) -> sqlite3.Connection:
    log.conn.close()
    return sqlite3.connect(log.path, isolation_level=None)


def test_an_untouched_log_verifies(log, tmp_path):
    result = check(log, tmp_path)
    assert result.ok and result.records == 120 and result.checkpoints == 3


def test_a_changed_field_is_named(log, tmp_path):
    db = raw_db(log)
    (raw,) = db.execute("SELECT entry FROM entries WHERE seq = 37").fetchone()
    entry = orjson.loads(raw)
    entry["output"]["label"] = 99
    db.execute("UPDATE entries SET entry = ? WHERE seq = 37", (orjson.dumps(entry),))
    result = check(log, tmp_path)
    assert not result.ok and result.first_bad == 37 and "was modified" in result.problem


def test_a_changed_field_with_its_hash_recomputed_breaks_the_chain(log, tmp_path):
    db = raw_db(log)
    (raw,) = db.execute("SELECT entry FROM entries WHERE seq = 37").fetchone()
    entry = orjson.loads(raw)
    entry["output"]["label"] = 99
    new = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    db.execute("UPDATE entries SET entry = ?, leaf = ? WHERE seq = 37", (new, leaf_hash(new)))
    result = check(log, tmp_path)
    assert (
        not result.ok and result.first_bad == 38 and "chain of hashes is broken" in result.problem
    )


def test_a_deleted_record_is_named(log, tmp_path):
    raw_db(log).execute("DELETE FROM entries WHERE seq = 60")
    result = check(log, tmp_path)
    assert not result.ok and result.first_bad == 60 and "out of place" in result.problem


def test_an_inserted_record_is_named(log, tmp_path):
    db = raw_db(log)
    db.execute("UPDATE entries SET seq = seq + 1000 WHERE seq >= 80")
    db.execute("UPDATE entries SET seq = seq - 999 WHERE seq >= 1000")
    fake = orjson.dumps({"kind": "prediction", "prev": "00", "request_id": "x", "seq": 80})
    db.execute(
        "INSERT INTO entries (seq, leaf, entry, kind) VALUES (80, ?, ?, 'prediction')",
        (leaf_hash(fake), fake),
    )
    result = check(log, tmp_path)
    assert not result.ok and result.first_bad == 80


def test_two_swapped_records_are_named(log, tmp_path):
    db = raw_db(log)
    a = db.execute("SELECT leaf, entry FROM entries WHERE seq = 10").fetchone()
    b = db.execute("SELECT leaf, entry FROM entries WHERE seq = 11").fetchone()
    db.execute("UPDATE entries SET leaf = ?, entry = ? WHERE seq = 10", b)
    db.execute("UPDATE entries SET leaf = ?, entry = ? WHERE seq = 11", a)
    result = check(log, tmp_path)
    assert not result.ok and result.first_bad == 10 and "out of place" in result.problem


def test_a_truncated_tail_is_caught_by_the_checkpoint(log, tmp_path):
    raw_db(log).execute("DELETE FROM entries WHERE seq >= 100")
    result = check(log, tmp_path)
    assert not result.ok and result.first_bad == 100
    assert "truncated" in result.problem and "covers 120" in result.problem


def test_a_consistently_rewritten_log_fails_its_signed_checkpoint(log, tmp_path):
    db = raw_db(log)
    rows = db.execute("SELECT seq, entry FROM entries ORDER BY seq").fetchall()
    prev = "0" * 64
    for seq, raw in rows:  # rewrite everything, chain and hashes included
        entry = orjson.loads(raw)
        if seq == 5:
            entry["output"]["label"] = 7
        entry["prev"] = prev
        new = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        db.execute(
            "UPDATE entries SET entry = ?, leaf = ? WHERE seq = ?", (new, leaf_hash(new), seq)
        )
        prev = leaf_hash(new).hex()
    result = check(log, tmp_path)
    assert not result.ok and "signed checkpoint" in result.problem and result.first_bad == 49


def test_a_forged_checkpoint_signature_is_caught(log, tmp_path):
    file = sorted((tmp_path / "checkpoints").glob("checkpoint-*.json"))[0]
    file.write_text(file.read_text().replace('"size": 50', '"size": 51'))
    result = check(log, tmp_path)
    assert not result.ok and "invalid signature" in result.problem


def test_frontier_matches_rfc6962_root():
    leaves = [leaf_hash(bytes([i])) for i in range(13)]
    frontier = Frontier()
    for i, leaf in enumerate(leaves):
        frontier.append(leaf)
        assert frontier.root() == root(leaves[: i + 1])


def test_group_commit_shares_transactions_and_survives_reopen(tmp_path):
    log = AuditLog(
        tmp_path / "a.db",
        signing_key=tmp_path / "k.pem",
        checkpoint_dir=tmp_path / "c",
        checkpoint_every=1000,
    )

    async def many():
        return await asyncio.gather(
            *[log.append_async({"kind": "prediction", "request_id": f"q{i}"}) for i in range(500)]
        )

    seqs = asyncio.run(many())
    assert sorted(seqs) == list(range(500))
    log.close()
    again = AuditLog(tmp_path / "a.db")
    assert again.size == 500 and again.find("q7")[0]["request_id"] == "q7"


def test_cli_verify_fails_naming_the_record(tmp_path):
    from tests.conftest import shipml

    (tmp_path / "shipml.toml").write_text('[project]\nname = "x"\n')
    log = AuditLog(
        tmp_path / ".shipml/audit/audit.db",
        signing_key=tmp_path / ".shipml/audit/signing.key",
        checkpoint_dir=tmp_path / ".shipml/audit/checkpoints",
    )
    log.append_many([{"kind": "event", "request_id": f"e{i}"} for i in range(5)])
    log.close()
    assert shipml("audit", "verify", cwd=tmp_path).returncode == 0
    db = sqlite3.connect(tmp_path / ".shipml/audit/audit.db", isolation_level=None)
    db.execute("DELETE FROM entries WHERE seq = 2")
    result = shipml("audit", "verify", cwd=tmp_path)
    assert result.returncode == 10
    assert "record 2 is out of place" in result.stderr and "Traceback" not in result.stderr


def test_several_processes_share_one_chain(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from shipml.audit import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]))\n"
        "for i in range(200):\n"
        "    log.append({'kind': 'prediction', 'request_id': f'{sys.argv[2]}-{i}'})\n"
    )
    db = tmp_path / "shared.db"
    AuditLog(db).conn.close()
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(db), name])
        for name in ("champion", "challenger", "gateway")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    log = AuditLog(db)
    assert log.size == 600
    assert verify(log).ok


def test_an_entry_rewritten_as_text_is_reported_not_crashed_on(log, tmp_path):
    raw_db(log).execute("UPDATE entries SET entry = replace(entry, 'r3', 'r9') WHERE seq = 3")
    result = check(log, tmp_path)
    assert not result.ok and result.first_bad == 3 and "was modified" in result.problem


def test_readers_never_create_keys_or_sign(tmp_path):
    from tests.conftest import shipml

    (tmp_path / "shipml.toml").write_text('[project]\nname = "x"\n')
    log = AuditLog(tmp_path / ".shipml/audit/audit.db")  # written without any key
    log.append({"kind": "event", "request_id": "e"})
    log.close()
    assert shipml("audit", "verify", cwd=tmp_path).returncode == 0
    assert shipml("audit", "export", "-o", "a.jsonl", cwd=tmp_path).returncode == 0
    assert not (tmp_path / ".shipml/audit/signing.key").exists()
    assert AuditLog(tmp_path / ".shipml/audit/audit.db").checkpoints() == []


def test_serving_in_a_project_with_a_broken_config_is_an_error(tmp_path):
    from tests.conftest import shipml

    (tmp_path / "shipml.toml").write_text("[audit]\nstore_input = false\n")
    result = shipml("serve", str(tmp_path / "pkg"), cwd=tmp_path)
    assert result.returncode == 3 and "unknown key 'audit.store_input'" in result.stderr
