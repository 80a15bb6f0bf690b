"""Verification of the audit log: every record re-hashed, the chain followed, and the
Merkle root compared with each signed checkpoint.

What it detects, naming the first bad record: a changed field (its hash no longer
matches), a deleted, inserted or reordered record (sequence numbers and the chain of
previous-hashes break), and a truncated or rewritten log (a signed checkpoint covers
records that are missing, or its root no longer matches the records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

from shipml.audit.log import GENESIS, AuditLog
from shipml.audit.merkle import Frontier, leaf_hash
from shipml.audit.signing import Checkpoint, check_signature, load_public_key


@dataclass
class Verification:
    ok: bool
    records: int
    checkpoints: int
    first_bad: int | None = None
    problem: str = ""
    notes: list[str] = field(default_factory=list)


def _checkpoints(log: AuditLog, checkpoint_dir: Path | None) -> tuple[list[Checkpoint], bool]:
    """Checkpoints from the operator's folder when there is one (outside the database,
    so rewriting the database cannot rewrite them), else from the database; and whether
    they came from the folder."""
    if checkpoint_dir is not None and checkpoint_dir.is_dir():
        files = sorted(checkpoint_dir.glob("checkpoint-*.json"))
        if files:
            return [Checkpoint.from_json(f.read_text()) for f in files], True
    return log.checkpoints(), False


def verify(
    log: AuditLog, *, checkpoint_dir: Path | None = None, public_key: Path | None = None
) -> Verification:
    checkpoints, from_files = _checkpoints(log, checkpoint_dir)
    key_file = public_key or (checkpoint_dir / "public.pem" if checkpoint_dir else None)
    key = load_public_key(key_file) if key_file is not None and key_file.is_file() else None
    result = Verification(ok=True, records=0, checkpoints=len(checkpoints))
    if checkpoints and key is None:
        result.notes.append("no public key: checkpoint signatures were not checked")
    trusted = []
    for cp in checkpoints:
        if key is not None and not check_signature(key, cp):
            if from_files:
                return _bad(result, None, f"checkpoint at size {cp.size} has an invalid signature")
            # In the database, another machine's key may have signed it (team mode).
            result.notes.append(
                f"checkpoint at size {cp.size} in the database is not signed "
                "by this machine's key: not used"
            )
            continue
        trusted.append(cp)
    checkpoints = trusted
    result.checkpoints = len(trusted)
    by_size = {cp.size: cp for cp in checkpoints}
    frontier = Frontier()
    prev = GENESIS
    position = 0
    for stored_seq, stored_leaf, raw in log.entries():
        if isinstance(raw, str):  # an SQL UPDATE can store the entry as text
            raw = raw.encode("utf-8")
        if isinstance(stored_leaf, str):
            stored_leaf = stored_leaf.encode("utf-8")
        leaf = leaf_hash(raw)
        if leaf != stored_leaf:
            return _bad(
                result,
                position,
                f"record {position} was modified: its content no longer matches its hash",
            )
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _bad(result, position, f"record {position} is not valid JSON")
        if stored_seq != position or entry.get("seq") != position:
            return _bad(
                result,
                position,
                f"record {position} is out of place: it says "
                f"seq {entry.get('seq')} (stored as {stored_seq}); a record was "
                "deleted, inserted or moved here",
            )
        if entry.get("prev") != prev:
            return _bad(
                result,
                position,
                f"record {position} does not follow record "
                f"{position - 1}: the chain of hashes is broken (a record before it "
                "was changed, removed or reordered)",
            )
        frontier.append(leaf)
        prev = leaf.hex()
        position += 1
        covering = by_size.get(position)
        if covering is not None and frontier.root().hex() != covering.root:
            return _bad(
                result,
                position - 1,
                f"the first {position} records do not match the "
                f"signed checkpoint of {covering.time}: the log was rewritten",
            )
    result.records = position
    beyond = [cp for cp in checkpoints if cp.size > position]
    if beyond:
        cp = max(beyond, key=lambda c: c.size)
        return _bad(
            result,
            position,
            f"the log was truncated: it has {position} record(s) but "
            f"the signed checkpoint of {cp.time} covers {cp.size}; record(s) {position} "
            f"to {cp.size - 1} are missing",
        )
    return result


def _bad(result: Verification, first: int | None, problem: str) -> Verification:
    result.ok = False
    result.first_bad = first
    result.problem = problem
    return result
