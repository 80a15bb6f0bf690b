"""The tamper kinds a tamperer with write access to a log's folder can try (who knows the
format but not the pinned key), each a function over a copy of a log and a plain SQLite
connection to it, with what verification says of it."""

import contextlib
import os
import secrets
import sqlite3

import orjson
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shipml.audit import AuditLog, Checkpoint
from shipml.audit.codec import canonical
from shipml.audit.merkle import Frontier, leaf_hash
from shipml.audit.signing import public_pem, sign
from tests.audit.helpers import LogFolder, record

TARGET = 37  # a record every checkpoint after the first few covers


def entry(folder: LogFolder, seq: int) -> dict:
    log = AuditLog(folder.db, writer=False)
    try:
        return orjson.loads(next(log.rows(seq)).raw)
    finally:
        log.close()


def every_entry(folder: LogFolder) -> list[dict]:
    log = AuditLog(folder.db, writer=False)
    try:
        return [orjson.loads(row.raw) for row in log.rows()]
    finally:
        log.close()


def put(db: sqlite3.Connection, seq: int, data: dict, *, rehash: bool = True) -> None:
    raw = canonical(data)
    blob = zstandard.ZstdCompressor().compress(raw)
    if rehash:
        db.execute(
            "UPDATE entries SET entry = ?, dict = 0, leaf = ? WHERE seq = ?",
            (blob, leaf_hash(raw), seq),
        )
    else:
        db.execute("UPDATE entries SET entry = ?, dict = 0 WHERE seq = ?", (blob, seq))


def size(db: sqlite3.Connection) -> int:
    return db.execute("SELECT MAX(seq) FROM entries").fetchone()[0] + 1


def newest_checkpoint(db: sqlite3.Connection) -> int:
    return db.execute("SELECT MAX(size) FROM checkpoints").fetchone()[0]


# -- the tamper kinds -------------------------------------------------------------------
def change_content(f: LogFolder, db):
    data = entry(f, TARGET)
    data["output"]["label"] = [99]
    put(db, TARGET, data, rehash=False)


def change_content_and_hash(f: LogFolder, db):
    data = entry(f, TARGET)
    data["output"]["label"] = [99]
    put(db, TARGET, data)


def change_column(column: str, value):
    def tamper(f: LogFolder, db):
        db.execute(f"UPDATE entries SET {column} = ? WHERE seq = ?", (value, TARGET))

    return tamper


def bytes_after_the_frame(f: LogFolder, db):
    """The stored frame unchanged, bytes smuggled after it (zstd would ignore them)."""
    (blob,) = db.execute("SELECT entry FROM entries WHERE seq = ?", (TARGET,)).fetchone()
    db.execute("UPDATE entries SET entry = ? WHERE seq = ?", (bytes(blob) + b"hidden", TARGET))


def delete(f, db):
    db.execute("DELETE FROM entries WHERE seq = 60")


def insert(f, db):
    db.execute("UPDATE entries SET seq = -seq - 1 WHERE seq >= 80")
    db.execute("UPDATE entries SET seq = -seq WHERE seq < 0")  # every seq from 80 moves up one
    put_new(db, 80, {**entry_like(f), "seq": 80})


def entry_like(f: LogFolder) -> dict:
    data = entry(f, TARGET)
    data["request_id"] = "forged"
    return data


def put_new(db, seq: int, data: dict) -> None:
    raw = canonical(data)
    db.execute(
        "INSERT INTO entries (seq, leaf, entry, dict, kind, request_id, variant) "
        "VALUES (?, ?, ?, 0, ?, ?, ?)",
        (
            seq,
            leaf_hash(raw),
            zstandard.ZstdCompressor().compress(raw),
            data["kind"],
            data["request_id"],
            data["variant"],
        ),
    )


def append(f: LogFolder, db):
    """A forged record after the last one, mimicking it (same writer, same time)."""
    n = size(db)
    last = entry(f, n - 1)
    killed = "killed" in str(f.root)
    # After a clean stop the last writer has closed the log; after SIGKILL its last
    # cadence is the documented unsigned tail, so this forgery claims a writer that
    # never signed (one posing as the dead writer inside its tail cannot be told apart).
    writer = secrets.token_hex(4) if killed else last["w"]
    put_new(db, n, {**record(1, "forged-"), "seq": n, "time": last["time"], "w": writer})


def swap(f, db):
    a = db.execute("SELECT leaf, entry, dict FROM entries WHERE seq = 10").fetchone()
    b = db.execute("SELECT leaf, entry, dict FROM entries WHERE seq = 11").fetchone()
    db.execute("UPDATE entries SET leaf = ?, entry = ?, dict = ? WHERE seq = 10", b)
    db.execute("UPDATE entries SET leaf = ?, entry = ?, dict = ? WHERE seq = 11", a)


def truncate(f, db):
    db.execute("DELETE FROM entries WHERE seq >= ?", (newest_checkpoint(db) - 10,))


def rewrite(f: LogFolder, db):
    """Every record rewritten, hashes included: a consistent log, but not the signed one."""
    data = every_entry(f)
    data[TARGET]["output"]["label"] = [7]
    for seq, one in enumerate(data):
        put(db, seq, one)


def resign(f: LogFolder, db):
    """The rewrite, then every checkpoint replaced by ones signed with a new key, whose
    public key replaces public.pem and whose head replaces head.json."""
    rewrite(f, db)
    key = Ed25519PrivateKey.generate()
    origin = db.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
    db.execute("DELETE FROM checkpoints")
    leaves = [bytes(r[0]) for r in db.execute("SELECT leaf FROM entries ORDER BY seq")]
    writers: dict[str, int] = {}
    for seq, one in enumerate(every_entry(f)):
        writers.setdefault(one["w"], seq)
    frontier = Frontier()
    opened = {start: w for w, start in writers.items()}
    for seq in range(len(leaves) + 1):
        if seq in opened or seq == len(leaves):
            names = [opened[seq]] if seq in opened else list(writers)
            for name in names:
                state = "open" if seq in opened else "closed"
                cp = sign(
                    key,
                    Checkpoint(origin, seq, frontier.root().hex(), "t", name, state),
                )
                db.execute(
                    "INSERT INTO checkpoints (size, session, state, ended, body, frontier) "
                    "VALUES (?, ?, ?, '', ?, ?)",
                    (seq, name, state, cp.to_json(), frontier.saved()),
                )
        if seq < len(leaves):
            frontier.append(leaves[seq])
    (f.checkpoints / "public.pem").write_bytes(public_pem(key))
    (f.checkpoints / "head.json").write_text(cp.to_json())


def delete_checkpoints(f: LogFolder, db):
    db.execute("DELETE FROM checkpoints")
    (f.checkpoints / "head.json").unlink()


def delete_newest_checkpoints(f: LogFolder, db):
    db.execute("DELETE FROM checkpoints WHERE size > 40")
    (f.checkpoints / "head.json").unlink()


def bad_signature(f, db):
    (cid, body) = db.execute("SELECT id, body FROM checkpoints WHERE size > 60 LIMIT 1").fetchone()
    data = orjson.loads(body)
    data["root"] = "00" * 32
    db.execute("UPDATE checkpoints SET body = ? WHERE id = ?", (orjson.dumps(data).decode(), cid))


def checkpoint_size_as_text(f, db):
    (cid,) = db.execute("SELECT id FROM checkpoints WHERE size > 60 LIMIT 1").fetchone()
    db.execute("UPDATE checkpoints SET size = 'sixty' WHERE id = ?", (cid,))


def garbage(f: LogFolder, db):
    db.close()
    for suffix in ("-wal", "-shm"):
        f.db.with_name(f.db.name + suffix).unlink(missing_ok=True)
    f.db.write_bytes(os.urandom(50_000))


def wrong_schema(f: LogFolder, db):
    db.close()
    for suffix in ("", "-wal", "-shm"):
        f.db.with_name(f.db.name + suffix).unlink(missing_ok=True)
    other = sqlite3.connect(f.db)
    other.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, leaf BLOB, entry BLOB)")
    other.commit()
    other.close()


CASES = {
    "change the content": (change_content, "was modified"),
    "change the content and its hash": (change_content_and_hash, "do not match the signed"),
    "change the leaf column": (change_column("leaf", b"\0" * 32), "was modified"),
    "change the dict column": (change_column("dict", 999), "cannot be decompressed"),
    "bytes after the stored frame": (bytes_after_the_frame, "cannot be decompressed"),
    "change the kind column": (change_column("kind", "event"), "kind column"),
    "change the request_id column": (change_column("request_id", "other"), "request_id column"),
    "change the variant column": (change_column("variant", "challenger"), "variant column"),
    "change the seq column": (change_column("seq", 10**9), "out of place"),
    "delete": (delete, "out of place"),
    "insert": (insert, "out of place"),
    "append": (append, "record"),
    "swap": (swap, "out of place"),
    "truncate the tail": (truncate, "truncated"),
    "consistent rewrite": (rewrite, "do not match the signed checkpoint"),
    "rewrite re-signed with a new key": (resign, "not by the pinned key"),
    "checkpoints deleted": (delete_checkpoints, "signed no checkpoint"),
    "newest checkpoints deleted": (delete_newest_checkpoints, "checkpoint"),
    "bad checkpoint signature": (bad_signature, "bad signature"),
    "a checkpoint's size as text": (checkpoint_size_as_text, "checkpoint"),
    "garbage database": (garbage, "is not a shipml audit log"),
    "wrong-schema database": (wrong_schema, "is not a shipml audit log"),
}


def apply(folder: LogFolder, case: str) -> None:
    """Tamper with ``folder`` as ``case`` says, in one transaction."""
    tamper, _ = CASES[case]
    db = folder.sql()
    db.execute("BEGIN")
    tamper(folder, db)
    with contextlib.suppress(sqlite3.ProgrammingError):  # closed by the tamperer
        db.execute("COMMIT")
    db.close()
