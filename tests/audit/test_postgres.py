"""The audit log in team mode: a real PostgreSQL server.

`make test` installs and starts PostgreSQL (scripts/postgres.sh) and sets
POSTGRES_TEST_URL; in CI a missing server is a failure, elsewhere a skip."""

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from shipml.audit import AuditLog, key_fingerprint, verify
from shipml.errors import AuditError, DuplicateRecord

URL = os.environ.get("POSTGRES_TEST_URL", "")
if not URL:
    if os.environ.get("CI"):
        raise RuntimeError("CI needs PostgreSQL: POSTGRES_TEST_URL is not set")
    pytest.skip("no PostgreSQL (set POSTGRES_TEST_URL)", allow_module_level=True)


@pytest.fixture
def url():
    """A fresh schema per test, so tests do not see each other's records."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def writer(url, tmp_path, **options):
    return AuditLog(
        url,
        signing_key=tmp_path / "k.pem",
        checkpoint_dir=tmp_path / "cp",
        checkpoint_every=25,
        checkpoint_interval_s=0.2,
        **options,
    )


def check(url, tmp_path):
    reader = AuditLog(url, writer=False)
    try:
        return verify(
            reader,
            pin=key_fingerprint(tmp_path / "k.pem"),
            checkpoint_dir=tmp_path / "cp",
            checkpoint_every=25,
            interval_s=0.2,
        )
    finally:
        reader.close()


@pytest.mark.parametrize("durability", ["process", "power"])
def test_append_checkpoint_verify_and_tamper(url, tmp_path, durability):
    log = writer(url, tmp_path, durability=durability)
    for start in range(0, 100, 10):
        log.append_many(
            [{"kind": "prediction", "request_id": f"p{i}"} for i in range(start, start + 10)]
        )

    async def grouped():
        jobs = [log.append_async({"kind": "prediction", "request_id": f"a{i}"}) for i in range(50)]
        jobs.append(log.append_async({"kind": "prediction", "request_id": "p3"}))
        return await asyncio.gather(*jobs, return_exceptions=True)

    outcome = asyncio.run(grouped())
    assert sorted(outcome[:50]) == list(range(100, 150))
    assert isinstance(outcome[50], DuplicateRecord)
    log.close()
    reader = AuditLog(url, writer=False)
    assert reader.find("p7")[0]["seq"] == 7
    result = check(url, tmp_path)
    assert result.ok and result.records == 150, result.problem
    reader.conn.execute("DELETE FROM entries WHERE seq = 42")
    result = check(url, tmp_path)
    assert not result.ok and result.first_bad == 42


def test_processes_share_one_tree_on_postgres(url, tmp_path):
    script = (
        "import sys; from pathlib import Path; from shipml.audit import AuditLog\n"
        "log = AuditLog(sys.argv[1], signing_key=Path(sys.argv[3]), checkpoint_every=25)\n"
        "for i in range(100):\n"
        "    log.append({'kind': 'prediction', 'request_id': f'{sys.argv[2]}-{i}'})\n"
        "log.close()\n"
    )
    writer(url, tmp_path).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", script, url, name, str(tmp_path / "k.pem")])
        for name in "abcdef"  # writers open while others append: each must read one state
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    result = check(url, tmp_path)
    assert result.ok and result.records == 600, result.problem


def test_a_lost_connection_is_reopened_and_passwords_never_show(url, tmp_path):
    import psycopg

    from shipml.audit.database import redact

    log = writer(url, tmp_path)
    log.append({"kind": "event", "request_id": "before"})
    pid = log.conn.info.backend_pid
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(AuditError) as err:  # the write that meets the dead connection fails
        log.append({"kind": "event", "request_id": "lost"})
    assert "shipml_test:shipml_test" not in str(err.value)
    log.append({"kind": "event", "request_id": "after"})  # ...and the next one reconnects
    log.close()
    events = AuditLog(url, writer=False).find_events()
    assert [r["request_id"] for r in events] == ["before", "after"]
    assert check(url, tmp_path).ok
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"


def test_a_foreign_schema_is_refused_untouched(url):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int)")
    with pytest.raises(AuditError, match="is not a shipml audit log"):
        AuditLog(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('entries')").fetchone()[0] is None


def test_the_dashboards_watch_on_postgres(url, tmp_path):
    """`shipml dashboard` on a team log: a view goes on from the last verdict (new rows
    read through PostgreSQL's placeholders and cursors), an old record changed in place
    shows at the whole verification beside the views; with the newest checkpoint row
    deleted, the next view verifies whole."""
    import psycopg
    import tomlkit

    from shipml.audit.watch import FULL_EVERY_S, LogWatch
    from shipml.config import load_config

    log = writer(url, tmp_path)
    log.append_many([{"kind": "prediction", "request_id": f"a{i}"} for i in range(60)])
    log.close()
    settings = {
        "project": {"name": "team"},
        "audit": {
            "path": url,
            "signing_key": str(tmp_path / "k.pem"),
            "checkpoint_dir": str(tmp_path / "cp"),
            "key_fingerprint": key_fingerprint(tmp_path / "k.pem"),
            "checkpoint_every": 25,
            "checkpoint_interval_s": 0.2,
        },
    }
    (tmp_path / "shipml.toml").write_text(tomlkit.dumps(settings))
    now = [0.0]
    watch = LogWatch(load_config(tmp_path), clock=lambda: now[0])
    assert watch.verify().ok and watch.whole_runs == 1
    log = writer(url, tmp_path)
    log.append_many([{"kind": "prediction", "request_id": f"b{i}"} for i in range(60)])
    log.close()
    seen = watch.verify()
    assert seen.ok and seen.records == 120 and watch.whole_runs == 1, seen.problem
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE entries SET entry = entry || '\\x00'::bytea WHERE seq = 3")
    assert watch.verify().ok  # below the verified state: left to the whole verification
    now[0] += FULL_EVERY_S
    assert watch.verify().ok and watch.whole_runs == 2
    watch.join(60)
    late = watch.verify()
    assert not late.ok and late.first_bad == 3, late.problem
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE entries SET entry = substring(entry from 1 for length(entry) - 1) WHERE seq = 3"
        )
    assert watch.verify().ok and watch.whole_runs == 3  # restored: verified whole, holds
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM checkpoints WHERE id = (SELECT MAX(id) FROM checkpoints)")
    gone = watch.verify()  # the remembered row went: verified whole, as verify does
    assert watch.whole_runs == 4 and gone.records == check(url, tmp_path).records == 120
