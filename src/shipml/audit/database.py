"""Where the audit log lives: SQLite (embedded default, WAL) or PostgreSQL (team mode).

The log's logic is the same on both; this module hides the dialect: placeholders, the
write lock that serialises appenders, the schema, durability, and turning a database
that is not an audit log (garbage, another schema, an older format) into a clear
``AuditError`` instead of a traceback."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipml.errors import AuditError

FORMAT = "shipml-audit/2"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq {int} PRIMARY KEY, leaf {blob} NOT NULL, entry {blob} NOT NULL, dict {int} NOT NULL,
    kind TEXT NOT NULL, request_id TEXT, variant TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS entries_request ON entries (request_id, variant);
CREATE INDEX IF NOT EXISTS entries_feedback ON entries (seq) WHERE kind = 'feedback';
CREATE TABLE IF NOT EXISTS dictionaries (id {int} PRIMARY KEY, data {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    id {serial} PRIMARY KEY, size {int} NOT NULL, session TEXT NOT NULL, state TEXT NOT NULL,
    ended TEXT NOT NULL, body TEXT NOT NULL, frontier {blob});
CREATE INDEX IF NOT EXISTS checkpoints_size ON checkpoints (size);
CREATE INDEX IF NOT EXISTS checkpoints_session ON checkpoints (session);
CREATE TABLE IF NOT EXISTS sessions (session TEXT PRIMARY KEY);
"""
SCHEMA = {
    "sqlite": _SCHEMA.format(int="INTEGER", blob="BLOB", serial="INTEGER"),
    "postgres": _SCHEMA.format(int="BIGINT", blob="BYTEA", serial="BIGSERIAL"),
}
DURABILITY = ("process", "power")
WAL_RESTART_FRAMES = 16_384  # 64 MiB of 4 KiB pages
NOT_A_LOG_HINT = (
    "point [audit] path at a shipml audit log, or move this file away to start a new log "
    "(keep it: it may be evidence)"
)


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
    """One connection to the log. ``writer=False`` never creates or changes anything."""

    def __init__(
        self, target: str | Path, *, writer: bool = True, durability: str = "process"
    ) -> None:
        if durability not in DURABILITY:
            raise AuditError(
                f"unknown audit durability {durability!r}", hint="use 'process' or 'power'"
            )
        self.target = str(target)
        self.shown = redact(target)
        self.writer = writer
        self.durability = durability
        self.conn: Any = None
        self.kind = "postgres" if is_url(target) else "sqlite"
        if self.kind == "postgres":
            self.reconnect()
        else:
            self._open_sqlite(Path(target))
        self.origin = self._check_format()

    def _open_sqlite(self, path: Path) -> None:
        if self.writer:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise AuditError(
                f"there is no audit log at {path} yet",
                hint="it is written by shipml serve, the gateway and alias changes",
            )
        try:
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout=30000")  # others may hold the write lock
            if self.writer:
                self.conn.execute("PRAGMA journal_mode=WAL")
                # process: a commit is in the OS (write()) when it returns, safe against
                # kill -9; power: fsynced too, safe against power loss.
                sync = "FULL" if self.durability == "power" else "NORMAL"
                self.conn.execute(f"PRAGMA synchronous={sync}")
                # Copying the WAL into the database fsyncs even in NORMAL mode: a writer
                # thread does it (wal_checkpointer), never a commit.
                self.conn.execute("PRAGMA wal_autocheckpoint=0")
                self.conn.execute(f"PRAGMA journal_size_limit={WAL_RESTART_FRAMES * 4096}")
                self._refuse_foreign()
                self.conn.executescript(SCHEMA["sqlite"])
        except sqlite3.DatabaseError as exc:
            raise self.not_a_log(exc) from exc

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
            if self.durability == "process":  # in the server's memory, safe if we die
                self.conn.execute("SET synchronous_commit = off")
            if self.writer:
                with self.conn.transaction():
                    # one creator at a time: CREATE ... IF NOT EXISTS races between processes
                    self.conn.execute("SELECT pg_advisory_xact_lock(7216354)")
                    self._refuse_foreign()
                    for statement in filter(str.strip, SCHEMA["postgres"].split(";")):
                        self.conn.execute(statement)
        except psycopg.Error as exc:
            raise AuditError(
                f"cannot open the audit database {self.shown}: "
                f"{type(exc).__name__}: {str(exc).strip()}",
                hint="check [audit] path (a postgresql:// URL) and the server",
            ) from exc

    def wal_checkpointer(self) -> Any:
        """For SQLite, a function that copies the WAL into the database on a connection
        of its own (call it from one thread); None for PostgreSQL."""
        if self.kind != "sqlite":
            return None
        conn = sqlite3.connect(self.target, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=1000")
        if self.durability == "process":
            conn.execute("PRAGMA synchronous=NORMAL")

        def copy() -> None:
            with contextlib.suppress(sqlite3.Error):
                _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames > WAL_RESTART_FRAMES:  # under steady load PASSIVE never ends
                    conn.execute("PRAGMA wal_checkpoint(RESTART)")  # the WAL starts over

        return copy

    def _refuse_foreign(self) -> None:
        """A database holding tables but no ``meta`` table is someone else's: never add
        our tables to it."""
        if self.kind == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            sql = (
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        tables = {name for (name,) in self.conn.execute(sql).fetchall()}
        if tables and "meta" not in tables:
            raise AuditError(
                f"{self.shown} is not a shipml audit log ({FORMAT}): it holds the tables "
                f"{', '.join(sorted(tables)[:5])} and no format marker",
                hint=NOT_A_LOG_HINT,
            )

    def _check_format(self) -> str:
        """The log's origin id; a writer of a new log creates it. Anything that is not a
        shipml audit log of this format is an AuditError."""
        try:
            rows = dict(self.execute("SELECT key, value FROM meta").fetchall())
            if not rows and self.writer:
                (count,) = self.execute("SELECT COUNT(*) FROM entries").fetchone()
                if count:
                    raise AuditError(
                        f"{self.shown} holds {count} audit records but no format marker",
                        hint=NOT_A_LOG_HINT,
                    )
                self.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING",
                    ("format", FORMAT, "origin", secrets.token_hex(16)),
                )
                rows = dict(self.execute("SELECT key, value FROM meta").fetchall())
        except self.error as exc:
            raise self.not_a_log(exc) from exc
        if rows.get("format") != FORMAT or not rows.get("origin"):
            seen = rows.get("format") or "no format marker"
            raise AuditError(
                f"{self.shown} is not a shipml audit log of format {FORMAT} ({seen})",
                hint=NOT_A_LOG_HINT,
            )
        return str(rows["origin"])

    def not_a_log(self, exc: Exception) -> AuditError:
        return AuditError(
            f"{self.shown} is not a shipml audit log ({FORMAT}): "
            f"{type(exc).__name__}: {str(exc).strip()[:200]}",
            hint=NOT_A_LOG_HINT,
        )

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

    def stream(self, sql: str, params: tuple[Any, ...] = (), size: int = 2000) -> Any:
        """Rows of a query, fetched ``size`` at a time (bounded memory on either side)."""
        if self.kind == "postgres":
            name = f"shipml_{secrets.token_hex(4)}"
            with self.conn.transaction(), self.conn.cursor(name=name) as cur:
                cur.itersize = size
                cur.execute(self._sql(sql), params)
                yield from cur
            return
        cur = self.conn.execute(sql, params)
        while rows := cur.fetchmany(size):
            yield from rows

    def taken(self, request_ids: set[Any]) -> set[tuple[Any, Any]]:
        """The (request id, variant) keys of the log among these request ids."""
        ids = list(request_ids)
        found: set[tuple[Any, Any]] = set()
        for start in range(0, len(ids), 500):
            chunk = tuple(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT request_id, variant FROM entries WHERE request_id IN ({marks})"
            found |= {(rid, variant) for rid, variant in self.execute(sql, chunk)}
        return found

    def begin_write(self) -> None:
        """Start a transaction holding the log's write lock (one appender at a time)."""
        if self.kind == "postgres":
            self.conn.execute("BEGIN")
            self.conn.execute("LOCK TABLE entries IN EXCLUSIVE MODE")
        else:
            self.conn.execute("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read the log as of one moment: several queries that must agree (checkpoints,
        then the leaves after them, then the sessions) see the same committed state,
        not one that other writers change between them."""
        if self.kind == "postgres":
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        else:
            self.conn.execute("BEGIN")  # WAL: the snapshot is taken at the first read
        try:
            yield
        finally:
            self.rollback()

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

    @property
    def error(self) -> type[Exception]:
        """The database driver's error base class."""
        if self.kind == "postgres":
            import psycopg

            return psycopg.Error
        return sqlite3.Error

    @property
    def integrity_error(self) -> type[Exception]:
        if self.kind == "postgres":
            import psycopg

            return psycopg.IntegrityError
        return sqlite3.IntegrityError

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.kind == "sqlite" and self.writer:  # leave the WAL copied in and empty
                self.conn.execute("PRAGMA busy_timeout=200")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(Exception):
            self.conn.close()
