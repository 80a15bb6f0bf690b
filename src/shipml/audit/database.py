"""Where the audit log lives: SQLite (embedded default, WAL) or PostgreSQL (team mode).

The log's logic is the same on both; this module hides the dialect: placeholders, the
write lock that serialises appenders, the schema and the checkpoint upsert."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from shipml.errors import AuditError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq {int} PRIMARY KEY, leaf {blob} NOT NULL, entry {blob} NOT NULL, kind TEXT NOT NULL,
    request_id TEXT);
CREATE INDEX IF NOT EXISTS entries_request ON entries (request_id);
CREATE TABLE IF NOT EXISTS checkpoints (
    size {int} PRIMARY KEY, root TEXT NOT NULL, time TEXT NOT NULL, signature TEXT NOT NULL);
"""
SCHEMA = {
    "sqlite": _SCHEMA.format(int="INTEGER", blob="BLOB"),
    "postgres": _SCHEMA.format(int="BIGINT", blob="BYTEA"),
}


def is_url(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def redact(target: str | Path) -> str:
    """The target with any password replaced by ***, safe for messages and logs."""
    text = str(target)
    if not is_url(text):
        return text
    scheme, _, rest = text.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return text
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class Database:
    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self.shown = redact(target)
        if is_url(target):
            self.kind = "postgres"
            self.conn: Any = None
            self.reconnect()
        else:
            self.kind = "sqlite"
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
            self.conn.execute("PRAGMA busy_timeout=30000")  # others may hold the write lock
            self.conn.executescript(SCHEMA["sqlite"])

    def reconnect(self) -> None:
        """(Re)open the PostgreSQL connection and make sure the tables exist."""
        try:
            import psycopg
        except ImportError as exc:
            raise AuditError(
                "a PostgreSQL audit log needs psycopg", hint="pip install 'shipml[postgres]'"
            ) from exc
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        try:
            self.conn = psycopg.connect(self.target, autocommit=True)
            with self.conn.transaction():
                # one creator at a time: CREATE ... IF NOT EXISTS races between processes
                self.conn.execute("SELECT pg_advisory_xact_lock(7216354)")
                for statement in filter(str.strip, SCHEMA["postgres"].split(";")):
                    self.conn.execute(statement)
        except psycopg.Error as exc:
            raise AuditError(
                f"cannot open the audit database {self.shown}: "
                f"{type(exc).__name__}: {str(exc).strip()}",
                hint="check [audit] path (a postgresql:// URL) and the server",
            ) from exc

    @property
    def broken(self) -> bool:
        return self.kind == "postgres" and (self.conn is None or bool(self.conn.closed))

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgres" else sql

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.kind == "postgres":
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        else:
            self.conn.executemany(sql, rows)

    def begin_write(self) -> None:
        """Start a transaction holding the log's write lock (one appender at a time)."""
        if self.kind == "postgres":
            self.conn.execute("BEGIN")
            self.conn.execute("LOCK TABLE entries IN EXCLUSIVE MODE")
        else:
            self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back if a transaction is open; never raises (the connection may be gone)."""
        try:
            if self.in_transaction:
                self.conn.execute("ROLLBACK")
        except Exception:  # a dead connection: reconnect() at the next write fixes it
            pass

    @property
    def in_transaction(self) -> bool:
        if self.kind == "postgres":
            from psycopg.pq import TransactionStatus

            return bool(self.conn.info.transaction_status != TransactionStatus.IDLE)
        return bool(self.conn.in_transaction)

    def upsert_checkpoint(self, size: int, root: str, time: str, signature: str) -> None:
        if self.kind == "postgres":
            sql = (
                "INSERT INTO checkpoints (size, root, time, signature) VALUES (?,?,?,?) "
                "ON CONFLICT (size) DO UPDATE SET root = EXCLUDED.root, "
                "time = EXCLUDED.time, signature = EXCLUDED.signature"
            )
        else:
            sql = (
                "INSERT OR REPLACE INTO checkpoints (size, root, time, signature) VALUES (?,?,?,?)"
            )
        self.execute(sql, (size, root, time, signature))

    @property
    def error(self) -> type[Exception]:
        """The database driver's error base class."""
        if self.kind == "postgres":
            import psycopg

            return psycopg.Error
        return sqlite3.Error

    def close(self) -> None:
        self.conn.close()
