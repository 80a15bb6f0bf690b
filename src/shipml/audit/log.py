"""The audit log: append-only, Merkle-checkpointed, in SQLite (WAL) or PostgreSQL.

Each record is its canonical JSON plus ``time``, ``seq`` (its position) and ``w`` (the
writer session), hashed as an RFC 6962 leaf; the stored leaf hash names a record changed
on its own, and signed checkpoints (size, Merkle root) on a time cadence and a count
catch everything else. Records are stored zstd-compressed (see ``codec``).

Start-up reads a frontier, not the log: the newest checkpoint keeps the O(log n) subtree
roots, checked against its signed root, and only the unsigned tail after it is read.

Writes are group-committed. ``durability="process"`` (default): a commit is in the OS
before the caller resumes, safe against ``kill -9``; with SQLite the event loop commits
the records its requests queued in the same turn, no thread in between.
``durability="power"`` (and PostgreSQL): a writer thread commits whatever is queued in one
transaction and one fsync. Several processes may share one log: inside the write lock
each first folds in what the others appended, so there is one tree whoever writes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from shipml.audit.codec import Compressor, canonical
from shipml.audit.database import Database
from shipml.audit.merkle import Frontier, leaf_hash
from shipml.audit.reading import Reader, scan
from shipml.audit.signing import (
    Checkpoint,
    check_signature,
    fingerprint_of,
    load_or_create_key,
    public_pem,
    raw_public,
    sign,
)
from shipml.audit.tail import MAX_BATCH, Sessions, TailCheck
from shipml.errors import AuditError, DuplicateRecord

__all__ = ["AuditLog", "scan"]

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
        self._seen = 0  # the newest checkpoint row this writer has looked at
        self._version: Any = None  # SQLite's data_version when this writer last looked
        self.frontier = self._load_frontier() if writer else Frontier()
        self.signed_size = self.frontier.size
        self._unsigned_since: float | None = None
        self._pending: dict[Any, list[tuple[dict[str, Any], asyncio.Future[int]]]] = {}
        self._queue: deque[tuple[dict[str, Any], Any, Any]] = deque()
        self._wake = threading.Event()  # the writer thread's
        self._tick = threading.Event()  # the signer thread's
        self._stopping = False
        self._writer: threading.Thread | None = None
        self._signer: threading.Thread | None = None
        self._inline = self.db.kind == "sqlite" and durability == "process"
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

    # -- start-up -------------------------------------------------------------------------
    def _load_frontier(self) -> Frontier:
        """The tree state from the newest checkpoint (checked against its signed root),
        then the unsigned tail after it, which must be one a writer may leave."""
        frontier = Frontier()
        (newest,) = self.db.execute("SELECT MAX(id) FROM checkpoints").fetchone()
        self._seen = int(newest or 0)
        row = self.db.execute(
            "SELECT size, body, frontier FROM checkpoints WHERE frontier IS NOT NULL "
            "ORDER BY size DESC, id DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            cp = _parse(row[1])
            try:
                frontier = Frontier.restore(int(row[0]), bytes(row[2]))
            except ValueError as exc:
                raise self._damaged(f"its newest checkpoint's frontier is damaged ({exc})") from exc
            if (
                cp is None
                or cp.size != frontier.size
                or cp.origin != self.origin
                or frontier.root().hex() != cp.root
                or not check_signature(cp)
                or (self.key is not None and cp.key != raw_public(self.key).hex())
            ):
                raise self._damaged(
                    f"its newest checkpoint (size {row[0]}) does not verify with this key"
                )
        tail: list[tuple[int, Any, Any]] = []
        for seq, leaf, raw in self.leaves(frontier.size):
            if seq != frontier.size or leaf_hash(raw) != leaf:
                raise self._damaged(f"record {seq} does not match its hash or place")
            if len(tail) <= self.checkpoint_every + MAX_BATCH:
                data = orjson.loads(raw)
                tail.append((seq, data.get("w"), data.get("time")))
            frontier.append(leaf)
        if self.key is not None and tail:
            check = TailCheck(
                self._sessions({str(w) for _, w, _ in tail}),
                tail[0][0],
                self.checkpoint_every,
                self.interval_s,
            )
            if not all(check.feed(*item) for item in tail) or frontier.size > tail[-1][0] + 1:
                raise self._damaged(check.problem or "its unsigned tail is too long")
        return frontier

    def _sessions(self, names: set[str]) -> Sessions:
        """What the checkpoints say of these writer sessions (from the indexed columns:
        start-up reads O(sessions), ``verify`` checks the columns against the bodies)."""
        sessions = Sessions()
        marks = ",".join("?" * len(names))
        for name, opened, closed in self.db.execute(
            "SELECT session, MIN(size), MAX(CASE WHEN state = 'closed' THEN size END) "
            f"FROM checkpoints WHERE session IN ({marks}) GROUP BY session",
            tuple(names),
        ):
            sessions.opened[str(name)] = int(opened)
            if closed is not None:
                sessions.closed[str(name)] = int(closed)
        for name in names:
            (at,) = self.db.execute(
                "SELECT MIN(size) FROM checkpoints WHERE ended LIKE ?", (f"%{name}%",)
            ).fetchone()
            if at is not None:
                sessions.closed[name] = min(int(at), sessions.closed.get(name, int(at)))
        return sessions

    def _damaged(self, problem: str) -> AuditError:
        return AuditError(
            f"will not write to the audit log {self.db.shown}: {problem}",
            hint="run `shipml audit verify`; keep the damaged log as evidence and move it "
            "away to start a new one",
        )

    def _write_public_key(self) -> None:
        if self.checkpoint_dir is None or self.key is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        pub = self.checkpoint_dir / "public.pem"
        pem = public_pem(self.key)
        if not pub.is_file() or pub.read_bytes() != pem:
            _replace(pub, pem, durable=False)

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
        ids = list({_text(r.get("request_id")) for r in records} - {None})
        taken: set[tuple[str | None, str]] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            taken |= {
                (rid, var)
                for rid, var in self.db.execute(
                    f"SELECT request_id, variant FROM entries WHERE request_id IN ({marks})",
                    tuple(chunk),
                )
            }
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
        if self._signer is None:
            self._start_signer()
        if self.key is None or self.frontier.size == self.signed_size:
            return
        if self.frontier.size - self.signed_size >= self.checkpoint_every:
            self._checkpoint_locked("open")
        elif self._unsigned_since is None:
            self._unsigned_since = time.monotonic()
            self._tick.set()

    # -- group commit ---------------------------------------------------------------------
    async def append_async(self, record: dict[str, Any]) -> int:
        """Resumes once the record is committed (see the module's durability modes),
        sharing the commit with every record queued meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if self._inline:
            batch = self._pending.get(loop)
            if batch is None:
                batch = self._pending[loop] = []
                if self.window_s:
                    loop.call_later(self.window_s, self._flush, loop)
                else:
                    loop.call_soon(self._flush, loop)
            batch.append((record, future))
        else:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, daemon=True, name="shipml-audit-writer"
                )
                self._writer.start()
            self._queue.append((record, loop, future))
            self._wake.set()
        return await future

    def _flush(self, loop: Any) -> None:
        batch = self._pending.pop(loop, [])
        for start in range(0, len(batch), MAX_BATCH):
            part = batch[start : start + MAX_BATCH]
            outcome = self._write([r for r, _ in part])
            _settle(list(zip((f for _, f in part), outcome, strict=True)))

    def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.wait(timeout=0.5)  # a timeout, so a missed wake-up cannot hang
                self._wake.clear()
                continue
            if self.window_s:
                time.sleep(self.window_s)
            batch: list[tuple[dict[str, Any], Any, Any]] = []
            while self._queue and len(batch) < MAX_BATCH:
                batch.append(self._queue.popleft())
            outcome = self._write([r for r, _, _ in batch])
            # One wake-up per event loop for the whole batch, not one per record.
            by_loop: dict[Any, list[tuple[Any, Any]]] = {}
            for (_, loop, fut), value in zip(batch, outcome, strict=True):
                by_loop.setdefault(loop, []).append((fut, value))
            for loop, items in by_loop.items():
                if not loop.is_closed():
                    loop.call_soon_threadsafe(_settle, items)

    # -- checkpoints ----------------------------------------------------------------------
    def _start_signer(self) -> None:
        self._signer = threading.Thread(
            target=self._sign_loop, daemon=True, name="shipml-audit-signer"
        )
        self._signer.start()

    def _sign_loop(self) -> None:
        """Sign within ``checkpoint_interval_s`` of the first record no checkpoint covers;
        and, for SQLite, copy the WAL into the database here, off the commit path."""
        wal = self.db.wal_checkpointer()
        copied = time.monotonic()
        while not self._stopping:
            if wal is not None and time.monotonic() - copied >= 1.0:
                wal()
                copied = time.monotonic()
            since = self._unsigned_since
            wait = 0.5 if since is None else since + self.interval_s - time.monotonic()
            if wait > 0:
                self._tick.wait(timeout=min(wait, 0.5))
                self._tick.clear()
                continue
            with self._lock:
                if not self.closed and self._unsigned_since is not None:
                    try:
                        self._checkpoint_locked("open")
                    except AuditError:
                        self._unsigned_since = time.monotonic()  # retry a cadence later

    def checkpoint(self) -> Checkpoint:
        with self._lock:
            return self._checkpoint_locked("open")

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
        self.signed_size = cp.size
        self._unsigned_since = None
        if self.checkpoint_dir is not None:
            data = cp.to_json().encode()
            _replace(self.checkpoint_dir / "head.json", data, self.db.durability == "power")
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
        self._stopping = True
        self._wake.set()
        self._tick.set()
        for thread in (self._writer, self._signer):
            if thread is not None:
                thread.join(timeout=10)
        for loop in list(self._pending):
            self._flush(loop)
        with self._lock:
            try:
                if self.key is not None and self.db.writer:
                    self._checkpoint_locked("closed")
            finally:
                self.closed = True
                self.db.close()


class _Plain:
    """Events and other rare records: zstd without a dictionary."""

    def __init__(self) -> None:
        self._zstd = Compressor()

    def compress(self, raw: bytes) -> bytes:
        return self._zstd.compress(raw)


_PLAIN = _Plain()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _parse(body: str) -> Checkpoint | None:
    try:
        return Checkpoint.from_dict(orjson.loads(body))
    except (orjson.JSONDecodeError, AuditError):
        return None


def _replace(path: Path, data: bytes, durable: bool) -> None:
    """Write ``path`` whole: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    tmp.replace(path)


def _settle(items: list[tuple[asyncio.Future[int], Any]]) -> None:
    for fut, value in items:
        if fut.done():
            continue
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)
