"""Verification of the audit log, in one streaming pass (bounded memory).

The checkpoints (from the database, the ``head.json`` beside the log and any head
published elsewhere) must each carry a valid signature by the pinned key and this log's
origin. Then every record is read in order: it must decompress, match its stored leaf
hash, say its own position, agree with the lookup columns, and have been written by a
writer session between its ``open`` and ``closed`` checkpoints; at each checkpoint's size
the Merkle root must match. Checkpoints beyond the end mean truncation. The records
after the newest checkpoint (the unsigned tail) must be one a writer may leave (see
``tail``) and are reported.

``verify_from`` can also go on from where an earlier pass stood (``Resume``): the tree
at the newest checkpoint it checked, recomputed from the records; the records and
checkpoints after it are checked exactly as in a whole pass (``audit.watch``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shipml.audit.merkle import Frontier, leaf_hash
from shipml.audit.reading import Reader, Row
from shipml.audit.signing import STATES, Checkpoint, check_signature
from shipml.audit.tail import Sessions, TailCheck
from shipml.errors import AuditError


@dataclass
class Verification:
    ok: bool
    records: int
    checkpoints: int
    first_bad: int | None = None
    problem: str = ""
    notes: list[str] = field(default_factory=list)
    unsigned: int = 0  # records after the newest signed checkpoint
    key: str = ""  # fingerprint of the key the checkpoints were checked against


class _Failed(Exception):
    def __init__(self, first_bad: int | None, problem: str) -> None:
        super().__init__(problem)
        self.first_bad = first_bad
        self.problem = problem


def verify(
    log: Reader,
    *,
    pin: str = "",
    checkpoint_dir: Path | None = None,
    heads: list[Path] | None = None,
    checkpoint_every: int = 10_000,
    interval_s: float = 1.0,
) -> Verification:
    """Check ``log``; ``pin`` is the trusted key's fingerprint (``sha256:...``). Without
    one, signatures are checked against the key the checkpoints name, and a note says
    that a rewrite re-signed with another key would pass."""
    extra = signed_heads(checkpoint_dir, heads or [])
    return verify_from(
        log, None, extra, pin=pin, checkpoint_every=checkpoint_every, interval_s=interval_s
    )[0]


@dataclass
class Resume:
    """Where a verification stood at the newest signed checkpoint it checked: the tree
    of that size (recomputed from the records; its root is the signed one) and the writer
    sessions the checkpoints up to it tell. A later verification can go on from here."""

    frontier: Frontier
    sessions: Sessions
    checkpoints: int = 0  # checkpoint rows of the database checked
    key: str = ""

    @property
    def size(self) -> int:
        return self.frontier.size


def verify_from(
    log: Reader,
    start: Resume | None,
    extra: list[tuple[Checkpoint, str]],
    *,
    pin: str,
    checkpoint_every: int,
    interval_s: float,
    after_id: int | None = None,
) -> tuple[Verification, Resume | None]:
    """Verify ``log`` from ``start`` (None: from its first record): the records from its
    size on, the checkpoint rows whose id is above ``after_id`` and the signed heads
    ``extra`` (every row when ``after_id`` is None; none below ``start``'s size: the
    caller checks those). Returns the verdict and, when it holds, where the pass stood
    at the newest checkpoint."""
    result = Verification(ok=True, records=0, checkpoints=0, key=pin)
    if start is not None:
        result.checkpoints, result.key = start.checkpoints, pin or start.key
        if not pin:
            result.notes.append(unpinned(start.key))
    where, params = ("", ()) if after_id is None else (" WHERE id > ?", (after_id,))
    (last,) = log.db.execute(f"SELECT MAX(size) FROM checkpoints{where}", params).fetchone()
    # SQLite keeps a size rewritten as text (PostgreSQL cannot), and sorts it above every
    # number: such a row is reported below, by checkpoint_rows
    last = last if isinstance(last, int) else 0
    newest = max([last, start.size if start else 0, *(cp.size for cp, _ in extra)])
    stored = log.checkpoint_rows(after_id)
    checkpoints = _checked(log, result, stored, extra)
    try:
        resume = _run(log, result, start, checkpoints, newest, (checkpoint_every, interval_s))
    except _Failed as failed:
        result.ok = False
        result.first_bad = failed.first_bad
        result.problem = failed.problem
        return result, None
    return result, resume


def unpinned(key: str) -> str:
    return (
        f"no pinned key: signatures were checked against {key}, the key the log names; "
        "pin it ([audit] key_fingerprint) to detect a re-signed log"
    )


def signed_heads(checkpoint_dir: Path | None, heads: list[Path]) -> list[tuple[Checkpoint, str]]:
    """Signed heads kept outside the database: ``head.json`` and published copies."""
    files = [checkpoint_dir / "head.json"] if checkpoint_dir is not None else []
    found = []
    for file in [*files, *heads]:
        if file in heads or file.is_file():
            try:
                cp = Checkpoint.from_dict(orjson.loads(file.read_bytes()))
            except (OSError, orjson.JSONDecodeError, AuditError) as exc:
                raise AuditError(f"cannot read the signed head {file}: {exc}") from exc
            found.append((cp, str(file)))
    return found


def _checked(
    log: Reader,
    result: Verification,
    stored: Iterator[tuple[Checkpoint | None, int]],
    extra: list[tuple[Checkpoint, str]],
) -> Iterator[Checkpoint]:
    """Every checkpoint in size order, each checked (signature, key, origin, columns)."""
    merged = sorted(((cp, where) for cp, where in extra), key=lambda item: item[0].size)
    for cp, size in _merge(stored, merged):
        where = "in the database" if isinstance(size, int) else f"in {size}"
        if cp is None and size == -1:
            raise _Failed(None, "a checkpoint row in the database has a size that is no number")
        if cp is None:
            raise _Failed(None, f"the checkpoint of size {size} {where} is not a checkpoint")
        if isinstance(size, int) and cp.size != size:
            raise _Failed(None, f"the checkpoint of size {cp.size} is stored as size {size}")
        if not check_signature(cp):
            raise _Failed(None, f"the checkpoint of size {cp.size} {where} has a bad signature")
        if result.key and cp.fingerprint != result.key:
            raise _Failed(
                None,
                f"the checkpoint of size {cp.size} {where} is signed by {cp.fingerprint}, not "
                f"by the pinned key {result.key}: the log was re-signed with another key",
            )
        if not result.key:
            result.key = cp.fingerprint
            result.notes.append(unpinned(cp.fingerprint))
        if cp.state not in STATES:
            raise _Failed(None, f"the checkpoint of size {cp.size} {where} has no valid state")
        if cp.origin != log.origin:
            raise _Failed(None, f"the checkpoint of size {cp.size} {where} is of another log")
        result.checkpoints += isinstance(size, int)
        yield cp


def _merge(
    stored: Iterator[tuple[Checkpoint | None, int]], files: list[tuple[Checkpoint, str]]
) -> Iterator[tuple[Checkpoint | None, int | str]]:
    pending = list(files)
    for cp, size in stored:
        while pending and pending[0][0].size < size:  # after the rows of its size
            yield pending.pop(0)
        yield cp, size
    yield from pending


def _run(
    log: Reader,
    result: Verification,
    start: Resume | None,
    checkpoints: Iterator[Checkpoint],
    newest: int,
    cadence: tuple[int, float],
) -> Resume:
    frontier = start.frontier.copy() if start else Frontier()
    sessions = copy.deepcopy(start.sessions) if start else Sessions()  # theirs stays as it is
    upcoming = next(checkpoints, None)
    tail = TailCheck(sessions, newest, *cadence)
    resume = None
    for row in log.rows(frontier.size):
        position = frontier.size
        while upcoming is not None and upcoming.size <= position:
            _against(upcoming, frontier, sessions)
            upcoming = next(checkpoints, None)
        if position == newest:  # every checkpoint is behind: a later pass starts here
            resume = Resume(frontier.copy(), copy.deepcopy(sessions))
        entry = _row(row, position, sessions)
        if position >= newest and not tail.feed(position, entry.get("w"), entry.get("time")):
            raise _Failed(tail.first_bad, tail.problem)
        frontier.append(row.leaf)
    while upcoming is not None:
        _against(upcoming, frontier, sessions)
        upcoming = next(checkpoints, None)
    resume = resume or Resume(frontier.copy(), copy.deepcopy(sessions))
    resume.checkpoints, resume.key = result.checkpoints, result.key
    result.records = frontier.size
    if not result.checkpoints and frontier.size:
        raise _Failed(
            0,
            f"the log has {frontier.size} record(s) and no signed checkpoint: checkpoints "
            "were deleted, or it was written without a signing key",
        )
    result.unsigned = tail.count
    if tail.count:
        result.notes.append(tail.note())
    return resume


def _row(row: Row, position: int, sessions: Sessions) -> dict[str, Any]:
    """One stored record at ``position``: in place, intact, and its own claims hold."""
    if row.seq != position:
        raise _Failed(
            position,
            f"record {position} is out of place: the next stored record is {row.seq}; "
            "records were deleted, inserted or moved",
        )
    if row.raw is None:
        raise _Failed(position, f"record {position} {row.problem}")
    if leaf_hash(row.raw) != row.leaf:
        raise _Failed(
            position, f"record {position} was modified: its content no longer matches its hash"
        )
    try:
        entry = orjson.loads(row.raw)
    except orjson.JSONDecodeError:
        raise _Failed(position, f"record {position} is not valid JSON") from None
    _record(entry, row.kind, row.request_id, row.variant, position, sessions)
    return dict(entry)


def _against(cp: Checkpoint, frontier: Frontier, sessions: Sessions) -> None:
    """A checkpoint reached in the stream: its root must match the records so far."""
    if cp.size > frontier.size:
        raise _Failed(
            frontier.size,
            f"the log was truncated: it has {frontier.size} record(s) but the signed "
            f"checkpoint of {cp.time} covers {cp.size}; record(s) {frontier.size} to "
            f"{cp.size - 1} are missing",
        )
    if frontier.root().hex() != cp.root:
        raise _Failed(
            max(cp.size - 1, 0),
            f"the first {cp.size} records do not match the signed checkpoint of {cp.time}: "
            "the log was rewritten",
        )
    missed = sessions.saw(cp)
    if missed:
        raise _Failed(
            max(cp.size - 1, 0),
            f"the writer that started at {cp.size} records did not end the writer(s) "
            f"{', '.join(sorted(missed))} that were open: the log's sessions were changed",
        )


def _record(
    entry: object,
    kind: str,
    request_id: str | None,
    variant: str | None,
    position: int,
    sessions: Sessions,
) -> None:
    """The record's own claims: its place, its lookup columns, its writer."""
    if not isinstance(entry, dict) or entry.get("seq") != position:
        seen = entry.get("seq") if isinstance(entry, dict) else None
        raise _Failed(
            position,
            f"record {position} is out of place: it says seq {seen}; a record was deleted, "
            "inserted or moved here",
        )
    defaults = {"kind": "event", "request_id": None, "variant": ""}
    for column, stored in (("kind", kind), ("request_id", request_id), ("variant", variant)):
        signed = entry.get(column)
        signed = defaults[column] if signed is None else str(signed)
        if (defaults[column] if column == "variant" and not signed else signed) != stored:
            raise _Failed(
                position,
                f"record {position}'s {column} column says {str(stored)[:60]!r} but the "
                f"record says {str(signed)[:60]!r}: the column was changed",
            )
    writer = str(entry.get("w"))
    if writer not in sessions.opened:
        raise _Failed(
            position,
            f"record {position} claims writer {writer!r}, which signed no checkpoint before "
            "it: the record was forged, or checkpoints were deleted",
        )
    if writer in sessions.closed and position >= sessions.closed[writer]:
        raise _Failed(
            position,
            f"record {position} claims writer {writer!r}, which had closed the log (or was "
            f"ended by a later writer) at {sessions.closed[writer]} records: it was appended "
            "by someone else",
        )
