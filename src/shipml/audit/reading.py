"""Reading the audit log: records in order (streamed, decompressed), lookups by request
id, lifecycle events and checkpoints. Readers never write."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import zstandard

from shipml.audit.codec import Decompressor
from shipml.audit.database import Database
from shipml.audit.merkle import leaf_hash
from shipml.audit.signing import Checkpoint
from shipml.errors import AuditError

DECODE_ERRORS = (ValueError, zstandard.ZstdError)
COLUMNS = "SELECT seq, leaf, entry, dict, kind, request_id, variant FROM entries"


@dataclass(frozen=True)
class Row:
    """One stored record as it is in the database (columns are copies for lookups)."""

    seq: int
    leaf: bytes
    raw: bytes | None  # the canonical JSON; None when it cannot be decompressed
    kind: str
    request_id: str | None
    variant: str | None
    problem: str = ""


class Reader:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.origin = db.origin
        self._decompressor = Decompressor(_LazyDicts(db))

    def rows(self, start: int = 0) -> Iterator[Row]:
        """Every stored record from ``start``, in ``seq`` order, in bounded memory."""
        for found in self.db.stream(f"{COLUMNS} WHERE seq >= ? ORDER BY seq", (start,)):
            yield self._row(found)

    def _where(self, condition: str, params: tuple[Any, ...]) -> list[Row]:
        rows = self.db.execute(f"{COLUMNS} WHERE {condition} ORDER BY seq", params).fetchall()
        return [self._row(found) for found in rows]

    def _row(self, found: Any) -> Row:
        seq, leaf, blob, dict_id, kind, rid, variant = found
        raw: bytes | None = None
        problem = ""
        try:
            raw = self._decompressor.decompress(_bytes(blob), int(dict_id))
        except (*DECODE_ERRORS, TypeError) as exc:
            problem = f"cannot be decompressed ({type(exc).__name__}: {str(exc)[:80]})"
        return Row(int(seq), _bytes(leaf), raw, str(kind), rid, variant, problem)

    def leaves(
        self, start: int, *, hashes_only: bool = False
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """(seq, stored leaf hash, canonical JSON) from ``start``; ``hashes_only`` skips
        reading the records (catching up with other writers)."""
        if hashes_only:
            sql = "SELECT seq, leaf FROM entries WHERE seq >= ? ORDER BY seq"
            for seq, leaf in self.db.execute(sql, (start,)):
                yield int(seq), _bytes(leaf), b""
            return
        for row in self.rows(start):
            if row.raw is None:
                raise AuditError(f"record {row.seq} of {self.db.shown} {row.problem}")
            yield row.seq, row.leaf, row.raw

    def entries(self) -> Iterator[tuple[int, bytes, bytes]]:
        """(seq, stored leaf, canonical JSON) of every record that can be read."""
        for row in self.rows():
            if row.raw is not None:
                yield row.seq, row.leaf, row.raw

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record as a dict, checked against its stored hash (export)."""
        for row in self.rows():
            if row.raw is None or leaf_hash(row.raw) != row.leaf:
                raise AuditError(
                    f"record {row.seq} of {self.db.shown} is damaged "
                    f"({row.problem or 'it does not match its hash'})",
                    hint="run `shipml audit verify`",
                )
            yield dict(orjson.loads(row.raw))

    def find(self, request_id: str) -> list[dict[str, Any]]:
        """Every record with this request id (one per variant that answered it), each
        checked against its hash and against the id it holds."""
        found = []
        for row in self._where("request_id = ?", (request_id,)):
            if row.raw is not None and leaf_hash(row.raw) == row.leaf:
                record = dict(orjson.loads(row.raw))
                if record.get("request_id") == request_id:
                    found.append(record)
        return found

    def find_events(self) -> list[dict[str, Any]]:
        """Lifecycle events (deploy, traffic change, promotion, rollback...), oldest first."""
        return [
            dict(orjson.loads(row.raw))
            for row in self._where("kind = 'event'", ())
            if row.raw is not None
        ]

    def scan(self, kind: str, *, newest_first: bool = False) -> Iterator[dict[str, Any]]:
        """Every record of ``kind`` (prediction, feedback, event), in log order or newest
        first; read as it streams (the monitor's windows)."""
        for _, record in scan(self.db, kind, newest_first=newest_first):
            yield record

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints stored in the database, by size (unreadable ones left out)."""
        return [cp for cp, _ in self.checkpoint_rows() if cp is not None]

    def checkpoint_rows(self, after: int | None = None) -> Iterator[tuple[Checkpoint | None, int]]:
        """(checkpoint or None when its row is not one, stored size) in size order; only
        the rows whose id is above ``after`` if given."""
        where, params = ("", ()) if after is None else ("WHERE id > ? ", (after,))
        sql = f"SELECT size, body FROM checkpoints {where}ORDER BY size, id"
        for size, body in self.db.stream(sql, params):
            if not isinstance(size, int):  # a size rewritten as text: verify reports it
                yield None, -1
                continue
            yield Checkpoint.parse(body), size

    def close(self) -> None:
        self.db.close()


def scan(
    db: Database, kind: str, *, newest_first: bool = False, after: int = -1
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(seq, record) of every record of ``kind`` with a sequence number above ``after``,
    decompressed; a record that cannot be read is left out (``verify`` reports it). A
    reader that is not the log's writer (the model server reading feedback labels) opens
    its own ``Database`` and calls this."""
    order = "DESC" if newest_first else "ASC"
    decompressor = Decompressor(_LazyDicts(db))
    # Feedback labels are rare among predictions: their partial index is used only when
    # the query names the kind itself (the model server polls for them every few seconds).
    where = "kind = 'feedback'" if kind == "feedback" else "kind = ?"
    rows = db.stream(
        f"SELECT seq, entry, dict FROM entries WHERE {where} AND seq > ? ORDER BY seq {order}",
        (after,) if kind == "feedback" else (kind, after),
    )
    for seq, blob, dict_id in rows:
        try:
            raw = decompressor.decompress(_bytes(blob), int(dict_id))
            yield int(seq), dict(orjson.loads(raw))
        except (*DECODE_ERRORS, orjson.JSONDecodeError, TypeError):
            continue


class _LazyDicts(dict[int, bytes]):
    """Compression dictionaries, read from the log the first time one is needed."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self._db = db

    def get(self, key: int, default: Any = None) -> Any:
        if key not in self:
            row = self._db.execute("SELECT data FROM dictionaries WHERE id = ?", (key,)).fetchone()
            if row is None:
                return default
            self[key] = _bytes(row[0])
        return self[key]


def _bytes(value: Any) -> bytes:
    """A BLOB/BYTEA as bytes; text (an SQL UPDATE can store it) as its UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)
