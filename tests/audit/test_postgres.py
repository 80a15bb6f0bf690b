"""The audit log in team mode: a real PostgreSQL server.

`make test` installs and starts PostgreSQL (scripts/postgres.sh) and sets
POSTGRES_TEST_URL; in CI a missing server is a failure, elsewhere a skip."""

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from shipml.audit import AuditLog, verify

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


def test_append_checkpoint_verify_and_tamper(url, tmp_path):
    log = AuditLog(
        url, signing_key=tmp_path / "k.pem", checkpoint_dir=tmp_path / "cp", checkpoint_every=25
    )
    for start in range(0, 100, 10):
        log.append_many(
            [{"kind": "prediction", "request_id": f"p{i}"} for i in range(start, start + 10)]
        )

    async def grouped():
        return await asyncio.gather(
            *[log.append_async({"kind": "prediction", "request_id": f"a{i}"}) for i in range(50)]
        )

    assert sorted(asyncio.run(grouped())) == list(range(100, 150))
    log.close()
    reader = AuditLog(url)
    assert reader.size == 150 and reader.find("p7")[0]["seq"] == 7
    assert verify(reader, checkpoint_dir=tmp_path / "cp").ok
    reader.conn.execute("DELETE FROM entries WHERE seq = 42")
    result = verify(AuditLog(url), checkpoint_dir=tmp_path / "cp")
    assert not result.ok and result.first_bad == 42


def test_processes_share_one_chain_on_postgres(url):
    script = (
        "import sys; from shipml.audit import AuditLog\n"
        "log = AuditLog(sys.argv[1])\n"
        "for i in range(100):\n"
        "    log.append({'kind': 'prediction', 'request_id': f'{sys.argv[2]}-{i}'})\n"
    )
    AuditLog(url).db.close()
    procs = [
        subprocess.Popen([sys.executable, "-c", script, url, name]) for name in ("a", "b", "c")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    log = AuditLog(url)
    assert log.size == 300 and verify(log).ok


def test_a_lost_connection_is_reopened_and_passwords_never_show(url):
    import psycopg

    from shipml.audit.database import redact

    log = AuditLog(url)
    log.append({"kind": "event", "request_id": "before"})
    pid = log.conn.info.backend_pid
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(Exception) as err:  # the write that meets the dead connection fails...
        log.append({"kind": "event", "request_id": "lost"})
    assert "shipml_test:shipml_test" not in str(err.value)
    log.append({"kind": "event", "request_id": "after"})  # ...and the next one reconnects
    assert [r["request_id"] for r in AuditLog(url).find_events()] == ["before", "after"]
    assert verify(AuditLog(url)).ok
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
