"""The audit log: append-only, hash-chained, Merkle-checkpointed, in SQLite (WAL).

Each record is stored as its canonical JSON (keys sorted, no insignificant white
space, UTF-8) together with its RFC 6962 leaf hash. Every entry carries its sequence
number and the leaf hash of the entry before it, so a changed, deleted, inserted or
reordered record breaks the chain at a named place; signed checkpoints (size, Merkle
root, time) detect a rewritten or truncated log.

Writes are group-committed: concurrent ``append`` calls share one transaction and one
fsync on a writer thread, and each caller resumes only once its record is durable.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from shipml.audit.database import Database, is_url
from shipml.audit.merkle import Frontier, leaf_hash
from shipml.audit.signing import Checkpoint, load_or_create_key, public_pem, sign
from shipml.errors import AuditError

GENESIS = "0" * 64


def canonical(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no white space, UTF-8 (NumPy values serialised)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True)
class Entry:
    seq: int
    leaf: bytes
    raw: bytes

    @property
    def data(self) -> dict[str, Any]:
        return dict(orjson.loads(self.raw))


class AuditLog:
    def __init__(
        self,
        path: Path | str,
        *,
        signing_key: Path | None = None,
        checkpoint_dir: Path | None = None,
        checkpoint_every: int = 10_000,
    ) -> None:
        self.path = path
        self.db = Database(path)
        self.key = load_or_create_key(signing_key) if signing_key else None
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        if self.key is not None and checkpoint_dir is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            pub = checkpoint_dir / "public.pem"
            if not pub.exists():
                pub.write_bytes(public_pem(self.key))
        self._lock = threading.Lock()
        self.frontier = Frontier()
        self.last_leaf = bytes.fromhex(GENESIS)
        for (leaf,) in self.db.execute("SELECT leaf FROM entries ORDER BY seq"):
            self.frontier.append(bytes(leaf))
            self.last_leaf = bytes(leaf)
        # Pending records for the writer thread: a deque (appends are atomic) and an event
        # that wakes the writer; cheaper per record than queue.Queue's locks.
        self._pending: deque[tuple[dict[str, Any], Any, Any]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._writer: threading.Thread | None = None

    @property
    def conn(self) -> Any:
        """The underlying database connection (sqlite3 or psycopg)."""
        return self.db.conn

    @property
    def size(self) -> int:
        return self.frontier.size

    # -- writing ------------------------------------------------------------------------
    def append_many(self, records: list[dict[str, Any]]) -> list[int]:
        """Append records in one transaction; returns their sequence numbers.

        Several processes may share one log (champion, challenger and gateway; server
        workers): inside the write lock each first catches up with records the others
        appended, so there is one chain whoever writes."""
        with self._lock:
            saved = (self.frontier.size, list(self.frontier._stack), self.last_leaf)
            try:
                if self.db.broken:
                    self.db.reconnect()
                self.db.begin_write()  # the log's write lock
                self._catch_up()
                before = self.frontier.size
                now = datetime.now(UTC).isoformat(timespec="microseconds")  # one write, one time
                rows = []
                for record in records:
                    seq = self.frontier.size
                    entry = {**record, "time": now, "seq": seq, "prev": self.last_leaf.hex()}
                    raw = canonical(entry)
                    leaf = leaf_hash(raw)
                    rows.append(
                        (seq, leaf, raw, str(entry.get("kind", "event")), entry.get("request_id"))
                    )
                    self.frontier.append(leaf)
                    self.last_leaf = leaf
                self.db.executemany(
                    "INSERT INTO entries (seq, leaf, entry, kind, request_id) VALUES (?,?,?,?,?)",
                    rows,
                )
                self.db.commit()
            except (self.db.error, TypeError, AuditError) as exc:
                self.db.rollback()
                self.frontier.size, self.frontier._stack, self.last_leaf = saved
                raise AuditError(
                    f"cannot write the audit log {self.db.shown}: {type(exc).__name__}"
                ) from exc
            after, every = self.frontier.size, self.checkpoint_every
            if self.key is not None and every and after // every > before // every:
                self._checkpoint_locked()
        return [row[0] for row in rows]

    def _catch_up(self) -> None:
        """Fold in records other processes appended since this one last looked."""
        (top,) = self.db.execute("SELECT MAX(seq) FROM entries").fetchone()
        size = 0 if top is None else top + 1
        if size == self.frontier.size:
            return
        for (leaf,) in self.db.execute(
            "SELECT leaf FROM entries WHERE seq >= ? ORDER BY seq", (self.frontier.size,)
        ):
            self.frontier.append(bytes(leaf))
            self.last_leaf = bytes(leaf)

    def append(self, record: dict[str, Any]) -> int:
        return self.append_many([record])[0]

    async def append_async(self, record: dict[str, Any]) -> int:
        """Group commit: resumes once the record is durable, sharing the fsync with every
        record queued meanwhile."""
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_loop, daemon=True, name="shipml-audit-writer"
            )
            self._writer.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._pending.append((record, loop, future))
        self._wake.set()
        return await future

    def _write_loop(self) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wake.wait(timeout=0.5)  # a timeout, so a missed wake-up cannot hang
                self._wake.clear()
                continue
            batch: list[tuple[dict[str, Any], Any, Any]] = []
            while self._pending and len(batch) < 5000:
                batch.append(self._pending.popleft())
            if self._pending:
                self._wake.set()  # more to write: go round again
            outcome: list[Any]
            try:
                outcome = self.append_many([r for r, _, _ in batch])
            except Exception as exc:
                outcome = [exc] * len(batch)
            # One wake-up per event loop for the whole batch, not one per record.
            by_loop: dict[Any, list[tuple[Any, Any]]] = {}
            for (_, loop, fut), value in zip(batch, outcome, strict=True):
                by_loop.setdefault(loop, []).append((fut, value))
            for loop, items in by_loop.items():
                loop.call_soon_threadsafe(_settle, items)

    def checkpoint(self) -> Checkpoint:
        with self._lock:
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> Checkpoint:
        self._catch_up()
        cp = Checkpoint(
            size=self.frontier.size,
            root=self.frontier.root().hex(),
            time=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if self.key is None:
            raise AuditError("no signing key configured", hint="set [audit] signing_key")
        cp = sign(self.key, cp)
        self.db.upsert_checkpoint(cp.size, cp.root, cp.time, cp.signature)
        if self.checkpoint_dir is not None:
            file = self.checkpoint_dir / f"checkpoint-{cp.size:012d}.json"
            tmp = file.with_suffix(".tmp")
            tmp.write_text(cp.to_json())
            tmp.replace(file)
        return cp

    def close(self) -> None:
        """Stop the writer and, if records came since the last checkpoint, sign one."""
        if self._writer is not None:
            self._stopping = True
            self._wake.set()
            self._writer.join(timeout=10)
            self._writer = None
        if self.key is not None:
            with self._lock:
                row = self.db.execute("SELECT MAX(size) FROM checkpoints").fetchone()
                if (row[0] or 0) < self.frontier.size:
                    self._checkpoint_locked()
        self.db.close()

    # -- reading ------------------------------------------------------------------------
    def entries(self) -> Iterator[tuple[int, bytes, bytes]]:
        """(stored seq, stored leaf, raw entry) in storage order."""
        yield from self.db.execute("SELECT seq, leaf, entry FROM entries ORDER BY seq")

    def find(self, request_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT entry FROM entries WHERE request_id = ? ORDER BY seq", (request_id,)
        )
        return [dict(orjson.loads(raw)) for (raw,) in rows]

    def scan(self, kind: str, *, newest_first: bool = False) -> Iterator[dict[str, Any]]:
        """Every record of ``kind`` (prediction, feedback, event), in log order or newest
        first; read as it streams (the monitor's windows)."""
        for _, record in scan(self.db, kind, newest_first=newest_first):
            yield record

    def find_events(self) -> list[dict[str, Any]]:
        """Lifecycle events (deploy, traffic change, promotion, rollback...), oldest first."""
        rows = self.db.execute("SELECT entry FROM entries WHERE kind = 'event' ORDER BY seq")
        return [dict(orjson.loads(raw)) for (raw,) in rows]

    def checkpoints(self) -> list[Checkpoint]:
        rows = self.db.execute("SELECT size, root, time, signature FROM checkpoints ORDER BY size")
        return [Checkpoint(*row) for row in rows]


def scan(
    db: Database, kind: str, *, newest_first: bool = False, after: int = -1
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(seq, record) of every record of ``kind`` with a sequence number above ``after``.
    A reader that is not the log's writer (the model server reading feedback labels)
    opens its own ``Database`` and calls this."""
    order = "DESC" if newest_first else "ASC"
    rows = db.execute(
        f"SELECT seq, entry FROM entries WHERE kind = ? AND seq > ? ORDER BY seq {order}",
        (kind, after),
    )
    for seq, raw in rows:
        yield int(seq), dict(orjson.loads(raw))


def _settle(items: list[tuple[asyncio.Future[int], Any]]) -> None:
    for fut, value in items:
        if fut.done():
            continue
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)


def record_event(config: Any, event: dict[str, Any]) -> None:
    """Write one lifecycle event to the project's log, if ``[audit] enabled``."""
    if not config.audit.enabled:
        return
    log = open_log(config)
    try:
        log.append({"kind": "event", **event})
    finally:
        log.close()


def open_log(config: Any, *, writer: bool = True) -> AuditLog:
    """The project's audit log (``config`` is a ProjectConfig). A reader (verify, explain,
    export) opens it without the signing key: it never creates a key or signs anything."""
    section = config.audit
    path: Path | str = section.path if is_url(section.path) else config.path(section.path)
    if not writer:
        if isinstance(path, Path) and not path.is_file():
            raise AuditError(
                f"there is no audit log at {path} yet",
                hint="it is written by shipml serve, the gateway and alias changes",
            )
        return AuditLog(path)
    return AuditLog(
        path,
        signing_key=config.path(section.signing_key),
        checkpoint_dir=config.path(section.checkpoint_dir),
        checkpoint_every=section.checkpoint_every,
    )
