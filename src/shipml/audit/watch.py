"""The audit verdict of a long-running viewer (``shipml dashboard``), without reading the
whole log at every view.

A ``LogWatch`` lives as long as its process and remembers, in that process's memory
only (a file could be rewritten by whoever can write the log), where its last verdict
that held stood:

- the tree at the newest signed checkpoint: its frontier, recomputed from the records
  (its root is that checkpoint's signed root), and the writer sessions the checkpoints
  told up to there (``verify.Resume``);
- the newest checkpoint row checked: its id and a digest of it (id, size, signed body);
- the leaf stored at that tree's last position;
- what it was checked against: the log's origin, the database file (device and inode)
  and the pinned key.

The next verification checks only what is new, each part exactly as a whole pass does:
the checkpoint rows added since (signature, pinned key, origin, state) and the records
from the remembered size on (each record, then the unsigned tail's rules). The Merkle
root at each new checkpoint's size is computed by extending the remembered frontier, so
a new signed root that matches is consistent with the remembered one (RFC 9162 §2.1.4,
shown by recomputation: the new tree holds the remembered tree's leaves unchanged).
Whatever cannot be shown to extend the remembered state is verified whole, and that
verdict is shown: another file, origin or pin; the remembered checkpoint row changed or
gone; a new row below the remembered size; a signed head below it that is no checked
row; the remembered last record gone or changed (truncation); any failure in the new
part. A view reads the rows and records that are new, never the old ones: its cost does
not grow with the months of checkpoints (one a second) a busy log collects.

Not seen until the next whole verification: what lies below the remembered state
changed in place, records or checkpoint rows (a value or column changed, records or
older checkpoints deleted, swapped or re-signed, a consistent rewrite). The whole
verification runs again ``full_every_s`` (10 minutes) after the last one began, or ten
times as long as the last one took if that is longer (at most a tenth of a core), in a
thread beside the views: a view never waits for it, and its verdict shows at the first
view after it ends. ``shipml audit verify`` reads everything every time and is the
authority (docs/audit.md, threat model).

A flood of views costs one verification at a time: a view waits for the one running and
then takes the verdict of a verification that began after it arrived. A log that failed
is verified again only when one of its files (database, WAL, ``head.json``) changes.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.audit.access import log_target, open_log, require_pin
from shipml.audit.reading import Reader
from shipml.audit.signing import Checkpoint
from shipml.audit.verify import Resume, Verification, signed_heads, verify_from

FULL_EVERY_S = 600.0  # a whole verification at least this often, beside the views
WHOLE_SHARE = 0.1  # ...and no more than this share of a core when the log is large
Files = tuple[tuple[int, int, int, int] | None, ...]
Head = tuple[Checkpoint, str]  # a signed head and where it was found


@dataclass
class _Verified:
    place: tuple[object, ...]  # origin, database file (device, inode), pinned key
    resume: Resume
    last_id: int  # the newest checkpoint row checked
    last_row: bytes  # its digest (b"" when there is none)
    last_leaf: bytes | None  # the leaf stored at resume.size - 1
    whole_at: float  # the clock when the last whole verification that held began


@dataclass
class _Whole:
    """A whole verification running in a thread beside the views."""

    began: float
    files: Files
    thread: threading.Thread | None = None
    result: Verification | None = None
    error: BaseException | None = None
    took: float = 0.0


class LogWatch:
    """``verify()`` gives `shipml audit verify`'s verdict on the project's log (against
    the pinned key), checking only what changed since the last one that held."""

    def __init__(
        self,
        config: Any,
        *,
        full_every_s: float = FULL_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.full_every_s = full_every_s
        self.clock = clock
        self.whole_runs = 0  # whole verifications so far
        self._lock = threading.Lock()
        self._runs = 0
        self._last: Verification | None = None
        self._state: _Verified | None = None
        self._failed: tuple[Files, Verification] | None = None
        self._every = full_every_s  # between whole verifications: grows with their cost
        self._whole: _Whole | None = None  # the one running beside the views

    @property
    def pin(self) -> str:
        return str(self.config.audit.key_fingerprint)

    def verify(self) -> Verification:
        seen = self._runs
        with self._lock:
            if self._runs > seen and self._last is not None:
                return self._last  # verified after this call began
            self._runs, self._last = self._runs + 1, None
            self._last = require_pin(self._check(), self.pin)
            return self._last

    def join(self, timeout: float | None = None) -> None:
        """Wait for the whole verification running beside the views, if one is; its
        verdict shows at the next ``verify()``."""
        whole = self._whole
        if whole is not None and whole.thread is not None:
            whole.thread.join(timeout)

    def _check(self) -> Verification:
        files = self._files()
        ended = self._ended()
        if ended is not None:
            return ended
        if self._failed is not None and files and self._failed[0] == files:
            return self._failed[1]  # nothing changed since it failed
        with self._reading() as (log, heads):
            place = (log.origin, files[0][:2] if files and files[0] else None, self.pin)
            state = self._state
            if state is not None and state.place == place:
                if self._whole is None and self.clock() - state.whole_at >= self._every:
                    self._start_whole(files)
                result = self._extend(log, state, heads)
                if result is not None:
                    return result
            return self._verify_whole(log, place, files, heads)

    @contextmanager
    def _reading(self) -> Iterator[tuple[Reader, list[Head]]]:
        """The log as of one moment, and the signed heads it must hold."""
        log = open_log(self.config, writer=False)
        try:
            # Heads first: a writer commits a checkpoint row before it writes head.json,
            # so the snapshot taken at the first read below holds every head read here.
            heads = signed_heads(self.config.path(self.config.audit.checkpoint_dir), [])
            with log.db.snapshot():
                yield log, heads
        finally:
            log.close()

    def _verify_whole(
        self, log: Reader, place: tuple[object, ...], files: Files, heads: list[Head]
    ) -> Verification:
        self.whole_runs += 1
        self._state = self._failed = None
        began = self.clock()
        result, resume = verify_from(log, None, heads, pin=self.pin, **self._cadence())
        if resume is None:
            self._failed = (files, result) if files else None
            return result
        rows = _Rows.newest(log)
        self._state = _Verified(
            place, resume, rows.last_id, rows.last, _leaf(log, resume.size), began
        )
        self._spaced(self.clock() - began)
        return result

    def _start_whole(self, files: Files) -> None:
        """A whole verification in a thread, on its own connection and snapshot."""
        whole = _Whole(self.clock(), files)

        def run() -> None:
            try:
                with self._reading() as (log, heads):
                    whole.result, _ = verify_from(log, None, heads, pin=self.pin, **self._cadence())
            except Exception as exc:  # the next view raises it
                whole.error = exc
            whole.took = self.clock() - whole.began

        self.whole_runs += 1
        whole.thread = threading.Thread(target=run, name="shipml-audit-whole", daemon=True)
        self._whole = whole
        whole.thread.start()

    def _ended(self) -> Verification | None:
        """The verdict of a whole verification that ended beside the views: a failure
        replaces the remembered state; one that held dates it."""
        whole = self._whole
        if whole is None or whole.thread is None or whole.thread.is_alive():
            return None
        self._whole = None
        self._spaced(whole.took)
        if whole.error is not None:
            self._state = None
            raise whole.error
        assert whole.result is not None
        if not whole.result.ok:
            self._state = None
            self._failed = (whole.files, whole.result) if whole.files else None
            return whole.result
        if self._state is not None:
            self._state.whole_at = max(self._state.whole_at, whole.began)
        return None

    def _spaced(self, took: float) -> None:
        self._every = max(self.full_every_s, took / WHOLE_SHARE)

    def _extend(self, log: Reader, state: _Verified, heads: list[Head]) -> Verification | None:
        """The verdict from the remembered state on, or None when the log cannot be
        shown to extend it."""
        size = state.resume.size
        rows = _Rows.read(log, state.last_id)
        if rows.known != state.last_row or rows.lowest < size:
            return None  # the remembered row changed or went; or a new one goes back
        if _leaf(log, size) != state.last_leaf:
            return None  # the remembered last record is gone or changed: truncated
        if not all(cp.size >= size or _checked_row(log, cp, state.last_id) for cp, _ in heads):
            return None
        later = [(cp, where) for cp, where in heads if cp.size >= size]
        result, resume = verify_from(
            log, state.resume, later, pin=self.pin, after_id=state.last_id, **self._cadence()
        )
        if resume is None:
            return None  # the whole pass says what is wrong, and where it starts
        state.resume, state.last_id, state.last_row = resume, rows.last_id, rows.last
        state.last_leaf = _leaf(log, resume.size)
        return result

    def _cadence(self) -> dict[str, Any]:
        section = self.config.audit
        return {
            "checkpoint_every": section.checkpoint_every,
            "interval_s": section.checkpoint_interval_s,
        }

    def _files(self) -> Files:
        """The database, its WAL and ``head.json`` as the file system has them (device,
        inode, size, time); empty for PostgreSQL."""
        target = log_target(self.config)
        if not isinstance(target, Path):
            return ()
        head = self.config.path(self.config.audit.checkpoint_dir) / "head.json"
        return tuple(_stat(f) for f in (target, target.with_name(target.name + "-wal"), head))


@dataclass
class _Rows:
    """The checkpoint rows from the remembered one on, in id order: the old ones are
    not read (the whole verification does)."""

    known: bytes  # digest of the remembered row; b"" when it is gone (or none was)
    last_id: int  # the newest row
    last: bytes  # its digest
    lowest: int = field(default=2**63)  # the smallest size among the rows after the known

    @classmethod
    def read(cls, log: Reader, known: int) -> _Rows:
        rows = cls(b"", known, b"")
        sql = "SELECT id, size, body FROM checkpoints WHERE id >= ? ORDER BY id"
        for cid, size, body in log.db.stream(sql, (known,)):
            data = body.encode() if isinstance(body, str) else bytes(body)
            digest = hashlib.sha256(f"{cid!r} {size!r} {len(data)} ".encode() + data).digest()
            if cid == known:
                rows.known = digest
            else:
                rows.lowest = min(rows.lowest, size if isinstance(size, int) else -1)
            rows.last_id, rows.last = int(cid), digest
        rows.last = rows.last or rows.known
        return rows

    @classmethod
    def newest(cls, log: Reader) -> _Rows:
        (top,) = log.db.execute("SELECT MAX(id) FROM checkpoints").fetchone()
        return cls.read(log, int(top or 0))


def _checked_row(log: Reader, cp: Checkpoint, known: int) -> bool:
    """Whether ``cp`` is one of the checkpoint rows already checked."""
    sql = "SELECT body FROM checkpoints WHERE size = ? AND id <= ?"
    return any(Checkpoint.parse(body) == cp for (body,) in log.db.execute(sql, (cp.size, known)))


def _leaf(log: Reader, size: int) -> bytes | None:
    if size == 0:
        return None
    row = log.db.execute("SELECT leaf FROM entries WHERE seq = ?", (size - 1,)).fetchone()
    if row is None:
        return None
    return row[0] if isinstance(row[0], bytes) else repr(row[0]).encode()  # BLOB or not


def _stat(file: Path) -> tuple[int, int, int, int] | None:
    try:
        found = os.stat(file)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)
