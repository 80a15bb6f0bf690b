"""The audit log: append-only, Merkle-checkpointed, in SQLite (WAL) or PostgreSQL.

Each record is its canonical JSON plus ``time``, ``seq`` (its position) and ``w`` (the
writer session), hashed as an RFC 6962 leaf and stored zstd-compressed (``codec``);
signed checkpoints (size, Merkle root) on a time cadence (``cadence``) and a count catch
any change. A writer opens the log from a frontier, not from every record (``startup``).

Writes are group-committed. ``durability="process"`` (default, SQLite): the event loop
commits (written to the OS, safe against ``kill -9``) once a turn of the loop adds no
record, so records of requests served together share one commit. ``"power"`` and
PostgreSQL: a thread commits what is queued, one transaction, one fsync (``committer``).
Several processes may share one log: inside the write lock each first folds in what the
others appended, so there is one tree whoever writes.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipml.audit.cadence import Cadence
from shipml.audit.codec import Compressor, canonical
from shipml.audit.committer import Committer, settle
from shipml.audit.database import Database
from shipml.audit.merkle import Frontier, leaf_hash
from shipml.audit.reading import Reader, scan
from shipml.audit.signing import (
    Checkpoint,
    fingerprint_of,
    load_or_create_key,
    public_pem,
    raw_public,
    sign,
)
from shipml.audit.startup import load_frontier
from shipml.audit.tail import MAX_BATCH
from shipml.errors import AuditError, DuplicateRecord
from shipml.files import replace_file

__all__ = ["AuditLog", "scan"]

GATHER_TURNS = 8  # event-loop turns a process-mode commit may wait for more records
INSERT = (
    "INSERT INTO entries (seq, leaf, entry, dict, kind, request_id, variant) VALUES (?,?,?,?,?,?,?)"
)


class AuditLog(Reader):
    def __init__(
        self,
        path: Path | str,
        *,
        signing_key: Path | None = None,
        checkpoint_dir: Path | None = None,
        checkpoint_every: int = 10_000,
        checkpoint_interval_s: float = 1.0,
        durability: str = "process",
        commit_window_ms: float = 0.0,
        key_fingerprint: str = "",
        writer: bool = True,
    ) -> None:
        super().__init__(Database(path, writer=writer, durability=durability))
        self.path = path
        self.session = secrets.token_hex(4)
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.interval_s = checkpoint_interval_s
        self.window_s = commit_window_ms / 1000
        self.key = None
        if signing_key is not None and writer:
            self.key, _ = load_or_create_key(signing_key)
            mine = fingerprint_of(raw_public(self.key))
            if key_fingerprint and mine != key_fingerprint:
                raise AuditError(
                    f"the signing key {signing_key} ({mine}) is not the pinned key "
                    f"{key_fingerprint}",
                    hint="restore the pinned key, or pin this one with `shipml audit key "
                    "--pin` once you know why it changed",
                )
            self._write_public_key()
        self._lock = threading.RLock()
        self._compressor = Compressor()
        self._dict_id = 0
        self._version: Any = None  # SQLite's data_version when this writer last looked
        self.frontier, self._seen = Frontier(), 0
        if writer:
            with self.db.snapshot():  # other writers may append while this one opens
                self.frontier, self._seen = load_frontier(
                    self, self.key, checkpoint_every, self.interval_s
                )
        self.signed_size = self.frontier.size
        self._pending: dict[Any, list[tuple[dict[str, Any], asyncio.Future[int]]]] = {}
        self._cadence = Cadence(self._cadence_due, self.interval_s, self.db.wal_checkpointer)
        inline = self.db.kind == "sqlite" and durability == "process"
        self._committer = None if inline else Committer(self._write, self.window_s)
        self.closed = False
        if self.key is not None:
            with self._lock:
                self._checkpoint_locked("start")

    @property
    def conn(self) -> Any:
        """The underlying database connection (sqlite3 or psycopg)."""
        return self.db.conn

    @property
    def size(self) -> int:
        return self.frontier.size

    def _write_public_key(self) -> None:
        if self.checkpoint_dir is None or self.key is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        pub = self.checkpoint_dir / "public.pem"
        pem = public_pem(self.key)
        if not pub.is_file() or pub.read_bytes() != pem:
            replace_file(pub, pem)

    # -- writing --------------------------------------------------------------------------
    def append_many(self, records: list[dict[str, Any]]) -> list[int]:
        """Append records in one transaction; returns their sequence numbers. A record
        that cannot be written fails the call; use ``append_async`` for per-record
        outcomes (a duplicate request id refuses only its own record)."""
        outcome = self._write(records)
        for value in outcome:
            if isinstance(value, BaseException):
                raise value
        return [int(v) for v in outcome]

    def append(self, record: dict[str, Any]) -> int:
        return self.append_many([record])[0]

    def _write(self, records: list[dict[str, Any]]) -> list[Any]:
        """Write what can be written; one outcome (a seq or an exception) per record."""
        if self.closed:
            return [AuditError("the audit log is closed")] * len(records)
        with self._lock:
            outcome: list[Any] = [None] * len(records)
            skip: set[int] = set()
            for attempt in range(2):
                saved = self.frontier.copy()
                compression = (self._dict_id, self._compressor)
                try:
                    if self.db.broken:
                        self.db.reconnect()
                    self.db.begin_write()
                    self._catch_up()
                    if attempt:
                        skip |= self._duplicates(records, outcome)
                    rows = self._rows(records, outcome, skip)
                    self.db.executemany(INSERT, rows)
                    self.db.commit()
                    break
                except self.db.integrity_error:
                    self.db.rollback()
                    self.frontier = saved
                    self._dict_id, self._compressor = compression
                    if attempt:
                        raise
                except (self.db.error, AuditError, OSError) as exc:
                    self.db.rollback()
                    self.frontier = saved
                    self._dict_id, self._compressor = compression
                    error = exc if isinstance(exc, AuditError) else None
                    error = error or AuditError(
                        f"cannot write the audit log {self.db.shown}: {type(exc).__name__}"
                    )
                    return [error] * len(records)
            self._after_commit()
        return outcome

    def _rows(
        self, records: list[dict[str, Any]], outcome: list[Any], skip: set[int]
    ) -> list[tuple[Any, ...]]:
        now = datetime.now(UTC).isoformat(timespec="microseconds")  # one write, one time
        rows = []
        for i, record in enumerate(records):
            if i in skip:
                continue
            seq = self.frontier.size
            try:
                raw = canonical({**record, "time": now, "seq": seq, "w": self.session})
            except AuditError as exc:
                outcome[i] = exc
                continue
            kind = str(record.get("kind", "event"))
            dict_id = self._dict_id if kind == "prediction" else 0
            blob = (self._compressor if dict_id else _PLAIN).compress(raw)
            if not self._dict_id and kind == "prediction":  # this session's dictionary
                self._dict_id = seq + 1
                self.db.execute(
                    "INSERT INTO dictionaries (id, data) VALUES (?, ?)", (self._dict_id, raw)
                )
                self._compressor = Compressor(raw)
            leaf = leaf_hash(raw)
            rid, variant = _text(record.get("request_id")), _text(record.get("variant")) or ""
            rows.append((seq, leaf, blob, dict_id, kind, rid, variant))
            self.frontier.append(leaf)
            outcome[i] = seq
        return rows

    def _duplicates(self, records: list[dict[str, Any]], outcome: list[Any]) -> set[int]:
        """Records whose (request id, variant) is already taken, in the log or earlier in
        this batch: refused one by one."""
        seen: set[tuple[str | None, str]] = set()
        taken = self.db.taken({_text(r.get("request_id")) for r in records} - {None})
        skip = set()
        for i, record in enumerate(records):
            key = (_text(record.get("request_id")), _text(record.get("variant")) or "")
            if key[0] is not None and (key in taken or key in seen):
                skip.add(i)
                outcome[i] = DuplicateRecord(
                    f"request id {key[0][:80]!r} (variant {key[1]!r}) is already in the audit "
                    "log: request ids are unique",
                    hint="send a new X-Request-ID for a new request",
                )
            seen.add(key)
        return skip

    def _catch_up(self) -> None:
        """Fold in what other processes wrote since this one last looked: their records,
        and a writer that started and ended this session (it then goes on as a new one)."""
        if self.db.kind == "sqlite":  # changes only when another connection committed
            (version,) = self.db.execute("PRAGMA data_version").fetchone()
            if version == self._version:
                return
            self._version = version
        (top,) = self.db.execute("SELECT MAX(seq) FROM entries").fetchone()
        size = 0 if top is None else int(top) + 1
        if size < self.frontier.size:
            raise AuditError(
                f"the audit log {self.db.shown} shrank from {self.frontier.size} to {size} "
                "records while this writer ran: records were deleted",
                hint="run `shipml audit verify`",
            )
        if size > self.frontier.size:
            for seq, leaf, _ in self.leaves(self.frontier.size, hashes_only=True):
                if seq != self.frontier.size:
                    raise AuditError(f"the audit log has a gap before record {seq}")
                self.frontier.append(leaf)
        if self.key is None:
            return
        rows = self.db.execute(
            "SELECT id, ended FROM checkpoints WHERE id > ? AND state = 'start' ORDER BY id",
            (self._seen,),
        ).fetchall()
        if rows:
            self._seen = max(int(i) for i, _ in rows)
        if any(self.session in str(ended).split(",") for _, ended in rows):
            self.session = secrets.token_hex(4)  # ended by a writer that started: go on anew
            self._sign_in_transaction("open")

    def _after_commit(self) -> None:
        self._cadence.start()
        if self.key is None or self.frontier.size == self.signed_size:
            return
        if self.frontier.size - self.signed_size >= self.checkpoint_every:
            self._checkpoint_locked("open")
        else:
            self._cadence.unsigned()

    # -- group commit ---------------------------------------------------------------------
    async def append_async(self, record: dict[str, Any]) -> int:
        """Resumes once the record is committed (see the module's durability modes),
        sharing the commit with every record queued meanwhile."""
        if self._committer is not None:
            return await self._committer.submit(record)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        batch = self._pending.get(loop)
        if batch is None:
            batch = self._pending[loop] = []
            if self.window_s:
                loop.call_later(self.window_s, self._flush, loop)
            else:
                loop.call_soon(self._flush_when_quiet, loop, 0, 0)
        batch.append((record, future))
        return await future

    def _flush_when_quiet(self, loop: Any, seen: int, turns: int) -> None:
        """Commit once a turn of the event loop has added no record to the batch: records
        of requests still being served join the commit (a commit costs more than a
        record), and nothing waits once every request has its record in. At most
        ``GATHER_TURNS`` turns, ``MAX_BATCH`` records."""
        batch = self._pending.get(loop)
        if batch is None:
            return
        if seen < len(batch) < MAX_BATCH and turns < GATHER_TURNS:
            loop.call_soon(self._flush_when_quiet, loop, len(batch), turns + 1)
            return
        self._flush(loop)

    def _flush(self, loop: Any) -> None:
        batch = self._pending.pop(loop, [])
        for start in range(0, len(batch), MAX_BATCH):
            part = batch[start : start + MAX_BATCH]
            outcome = self._write([r for r, _ in part])
            settle(list(zip((f for _, f in part), outcome, strict=True)))

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        with self._lock:
            return self._checkpoint_locked("open")

    def _cadence_due(self) -> None:
        """(The cadence thread.) Sign what is still unsigned."""
        with self._lock:
            if not self.closed and self._cadence.since is not None:
                self._checkpoint_locked("open")

    def _checkpoint_locked(self, state: str) -> Checkpoint:
        if self.key is None:
            raise AuditError("no signing key configured", hint="set [audit] signing_key")
        saved = self.frontier.copy()
        try:
            if self.db.broken:
                self.db.reconnect()
            self.db.begin_write()
            self._catch_up()
            cp = self._sign_in_transaction(state)
            self.db.commit()
        except self.db.error as exc:
            self.db.rollback()
            self.frontier = saved
            raise AuditError(
                f"cannot sign a checkpoint of {self.db.shown}: {type(exc).__name__}"
            ) from exc
        if self.checkpoint_dir is not None:  # published, then counted as signed
            head = self.checkpoint_dir / "head.json"
            replace_file(head, cp.to_json().encode(), durable=self.db.durability == "power")
        self.signed_size = cp.size
        self._cadence.signed()
        return cp

    def _sign_in_transaction(self, state: str) -> Checkpoint:
        """Sign and store a checkpoint inside the caller's write transaction. ``start``
        ends every session the ``sessions`` table holds as open (a live one notices at
        its next write and goes on as a new session; a dead one can no longer be posed
        as); ``closed`` removes this session from it."""
        assert self.key is not None
        ended: list[str] = []
        if state == "start":
            ended = [str(s) for (s,) in self.db.execute("SELECT session FROM sessions")]
            self.db.execute("DELETE FROM sessions")
        if state == "closed":
            self.db.execute("DELETE FROM sessions WHERE session = ?", (self.session,))
        else:
            self.db.execute(
                "INSERT INTO sessions (session) VALUES (?) ON CONFLICT DO NOTHING",
                (self.session,),
            )
        cp = sign(
            self.key,
            Checkpoint(
                origin=self.origin,
                size=self.frontier.size,
                root=self.frontier.root().hex(),
                time=datetime.now(UTC).isoformat(timespec="microseconds"),
                session=self.session,
                state=state,
                ended=",".join(sorted(set(ended) - {self.session})),
            ),
        )
        self.db.execute(
            "INSERT INTO checkpoints (size, session, state, ended, body, frontier) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (cp.size, cp.session, cp.state, cp.ended, cp.to_json(), self.frontier.saved()),
        )
        (newest,) = self.db.execute("SELECT MAX(id) FROM checkpoints").fetchone()
        self._seen = int(newest)
        return cp

    def close(self) -> None:
        """Drain the writer, then sign a closing checkpoint: this session writes no more."""
        if self.closed:
            return
        if self._committer is not None:
            self._committer.stop()
        self._cadence.stop()
        for loop in list(self._pending):
            self._flush(loop)
        with self._lock:
            try:
                if self.key is not None and self.db.writer:
                    self._checkpoint_locked("closed")
            finally:
                self.closed = True
                self.db.close()


_PLAIN = Compressor()  # events and other rare records: zstd without a dictionary


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
