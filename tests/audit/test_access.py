"""The commands on a project's log: verify (pinned key, exit codes, damaged or foreign
databases), key, export (streamed), and the pin written on first use."""

import sqlite3
from pathlib import Path

import orjson
import pytest

from shipml.audit import open_log, record_event
from shipml.config import load_config
from tests.conftest import shipml


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "shipml.toml").write_text(
        '# the team\'s settings\n[project]\nname = "x"  # keep me\n\n[audit]\nenabled = true\n'
    )
    config = load_config(tmp_path)
    for i in range(5):
        record_event(config, {"event": "alias", "n": i})  # first use: key made and pinned
    log = open_log(load_config(tmp_path))
    log.append_many([{"kind": "prediction", "request_id": f"p{i}"} for i in range(20)])
    log.close()
    return tmp_path


def test_first_use_pins_the_key_and_keeps_the_file(project):
    text = (project / "shipml.toml").read_text()
    assert text.startswith("# the team's settings") and "# keep me" in text
    pin = load_config(project).audit.key_fingerprint
    shown = shipml("audit", "key", cwd=project)
    assert shown.returncode == 0 and shown.stdout.count(pin) == 2  # fingerprint and pin
    verified = shipml("audit", "verify", cwd=project)
    assert verified.returncode == 0, verified.stderr
    assert "verified 25 records" in verified.stdout and pin in verified.stdout


def test_verify_trusts_only_the_pinned_key(project):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shipml.audit.signing import fingerprint_of, raw_public

    other = fingerprint_of(raw_public(Ed25519PrivateKey.generate()))
    refused = shipml("audit", "verify", "--fingerprint", other, cwd=project)
    assert refused.returncode == 10 and "not by the pinned key" in refused.stderr
    key = project / ".shipml/audit/checkpoints/public.pem"
    assert shipml("audit", "verify", "--key", str(key), cwd=project).returncode == 0
    text = (project / "shipml.toml").read_text()
    (project / "shipml.toml").write_text(text.split("key_fingerprint")[0])  # pin removed
    unpinned = shipml("audit", "verify", cwd=project)
    assert unpinned.returncode == 10 and "no key is pinned" in unpinned.stderr
    pinned = shipml("audit", "key", "--pin", cwd=project)
    assert pinned.returncode == 0 and shipml("audit", "verify", cwd=project).returncode == 0


def test_a_replaced_signing_key_stops_writers(project):
    key = project / ".shipml/audit/signing.key"
    key.unlink()
    result = shipml("audit", "checkpoint", cwd=project)  # a writer: would make a new key
    assert result.returncode == 10 and "shipml.toml pins" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("damage", ["garbage", "wrong schema", "empty", "old format"])
def test_a_damaged_or_foreign_database_is_a_clear_error(project, damage):
    db = project / ".shipml/audit/audit.db"
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(b"not a database at all" * 1000)
    elif damage == "empty":
        db.write_bytes(b"")
    else:
        conn = sqlite3.connect(db)
        if damage == "old format":  # format 1: a leaf per record and a hash chain
            conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, leaf BLOB, entry BLOB)")
        else:
            conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
        conn.commit()
        conn.close()
    commands = [("audit", "verify")]
    if damage == "garbage":
        commands += [("audit", "export", "-o", "x.jsonl"), ("audit", "checkpoint")]
    for command in commands:
        result = shipml(*command, cwd=project)
        assert result.returncode == 10, (damage, command, result.stderr)
        assert "is not a shipml audit log" in result.stderr
        assert "Traceback" not in result.stderr
    if damage != "garbage":  # nothing of ours was added to someone else's database
        tables = sqlite3.connect(db).execute("SELECT name FROM sqlite_master").fetchall()
        assert tables in ([], [("entries",)], [("customers",)])


def test_export_streams_jsonl_and_parquet(project):
    import pandas as pd

    assert shipml("audit", "export", "-o", "out/a.jsonl", cwd=project).returncode == 0
    lines = (project / "out/a.jsonl").read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(25))
    assert {r["kind"] for r in records} == {"event", "prediction"}
    assert shipml("audit", "export", "-o", "a.parquet", cwd=project).returncode == 0
    frame = pd.read_parquet(project / "a.parquet")
    assert frame["seq"].tolist() == list(range(25)) and frame["request_id"].iloc[-1] == "p19"
    folder = shipml("audit", "export", "-o", "out", cwd=project)
    assert folder.returncode == 10 and "is a folder" in folder.stderr


def test_export_refuses_a_damaged_record(project):
    db = sqlite3.connect(project / ".shipml/audit/audit.db")
    db.execute("UPDATE entries SET leaf = zeroblob(32) WHERE seq = 3")
    db.commit()
    result = shipml("audit", "export", "-o", "a.jsonl", cwd=project)
    assert result.returncode == 10 and "record 3" in result.stderr
    assert not (project / "a.jsonl").exists()  # nothing half-written


def test_a_rollback_to_an_older_copy_is_caught_by_a_published_head(project, tmp_path):
    import shutil

    from shipml.audit import verify_project

    audit = project / ".shipml/audit"
    older = tmp_path / "older"
    shutil.copytree(audit, older)  # yesterday's backup of the whole folder
    log = open_log(load_config(project))
    log.append_many([{"kind": "prediction", "request_id": f"n{i}"} for i in range(10)])
    log.close()
    published = tmp_path / "head-published.json"  # copied off the machine
    shutil.copy(audit / "checkpoints/head.json", published)
    shutil.rmtree(audit)
    shutil.copytree(older, audit)  # the rollback: database, head.json, everything
    config = load_config(project)
    assert verify_project(config).ok  # on its own, the older copy is a valid log
    result = verify_project(config, heads=[published])
    assert not result.ok and "truncated" in result.problem


def test_a_garbage_head_file_is_a_clear_error(project):
    (project / ".shipml/audit/checkpoints/head.json").write_bytes(b"\x00garbage{")
    result = shipml("audit", "verify", cwd=project)
    assert result.returncode == 10 and "cannot read the signed head" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")
def test_export_to_a_device_writes_into_it_and_a_full_disk_is_an_error(project):
    # `-o /dev/stdout` streams; a device was once replaced by a regular file.
    piped = shipml("audit", "export", "-o", "/dev/stdout", cwd=project)
    assert piped.returncode == 0, piped.stderr
    assert [orjson.loads(line)["seq"] for line in piped.stdout.splitlines()] == list(range(25))
    assert "exported 25 records → /dev/stdout" in piped.stderr  # the data alone on stdout
    full = shipml("audit", "export", "-o", "/dev/full", cwd=project)
    assert full.returncode == 10 and "cannot write /dev/full" in full.stderr
    assert "Traceback" not in full.stderr and Path("/dev/full").is_char_device()


def test_explain_shows_markup_in_the_records_as_text(project):
    """A request id or variant is the client's text: Rich markup in it is printed as
    written (it raised MarkupError, a traceback, or restyled the line)."""
    from tests.conftest import shipml_here

    rid, variant = "[/oops] [red]x", "a[/]b"
    log = open_log(load_config(project))
    log.append_many(
        [
            {"kind": "prediction", "request_id": rid, "variant": variant, "model": "m"},
            {"kind": "prediction", "request_id": rid, "variant": "[bold]s", "model": "m"},
        ]
    )
    log.close()
    shown = shipml_here("audit", "explain", rid, cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    assert f"request {rid} at" in shown.stdout and f"variant {variant}" in shown.stdout
    assert "also answered by variant [bold]s" in shown.stdout


def test_a_mistyped_fingerprint_is_a_usage_error_not_a_tampered_log(project):
    """ "abc" was reported as a log re-signed with another key (exit 10: restore it from a
    backup); a fingerprint copied in capitals is the same fingerprint."""
    from tests.conftest import shipml_here

    typo = shipml_here("audit", "verify", "--fingerprint", "abc", cwd=project)
    assert typo.returncode == 3 and "--fingerprint expects sha256:" in typo.stderr
    assert "Traceback" not in typo.stderr
    pin = load_config(project).audit.key_fingerprint
    upper = shipml_here("audit", "verify", "--fingerprint", pin.upper(), cwd=project)
    assert upper.returncode == 0, upper.stderr


def test_verify_key_and_explain_speak_json(project):
    """For an auditor's scripts: JSON alone on stdout, the same verdicts and exit codes."""
    import json

    from tests.conftest import shipml_here

    pin = load_config(project).audit.key_fingerprint
    key = json.loads(shipml_here("audit", "key", "--json", cwd=project).stdout)
    assert key["fingerprint"] == key["pinned"] == pin
    assert key["signing_key"].endswith("signing.key")
    verified = shipml_here("audit", "verify", "--json", cwd=project)
    assert verified.returncode == 0, verified.stderr
    found = json.loads(verified.stdout)
    assert found["ok"] is True and found["records"] == 25 and found["key"] == pin
    other = "sha256:" + "0" * 64
    refused = shipml_here("audit", "verify", "--json", "--fingerprint", other, cwd=project)
    assert refused.returncode == 10 and "not by the pinned key" in refused.stderr
    assert json.loads(refused.stdout)["ok"] is False
    links = json.loads(shipml_here("audit", "explain", "p3", "--json", cwd=project).stdout)
    assert links[0]["kind"] == "prediction" and links[0]["details"]["seq"] == 8
    assert {link["kind"] for link in links} >= {"prediction", "model version", "code"}
