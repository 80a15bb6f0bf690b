"""How a writer opens the log: from a frontier, not from every record.

The newest checkpoint keeps the O(log n) subtree roots of the tree at its size; they are
checked against its signed root, then only the unsigned tail after it is read, which
must be one a writer may leave (``tail``). A log of a million records opens in
milliseconds.
"""

from __future__ import annotations

from typing import Any

import orjson

from shipml.audit.merkle import Frontier, leaf_hash
from shipml.audit.reading import Reader
from shipml.audit.signing import Checkpoint, check_signature, raw_public
from shipml.audit.tail import MAX_BATCH, Sessions, TailCheck
from shipml.errors import AuditError


def load_frontier(
    log: Reader, key: Any, checkpoint_every: int, interval_s: float
) -> tuple[Frontier, int]:
    """The tree state (from the newest checkpoint, then its unsigned tail) and the id
    of the newest checkpoint row. ``key``, the writer's signing key, must be the key of
    that checkpoint (None: nothing is signed)."""
    db = log.db
    frontier = Frontier()
    (newest,) = db.execute("SELECT MAX(id) FROM checkpoints").fetchone()
    row = db.execute(
        "SELECT size, body, frontier FROM checkpoints WHERE frontier IS NOT NULL "
        "ORDER BY size DESC, id DESC LIMIT 1"
    ).fetchone()
    if row is not None:
        cp = Checkpoint.parse(row[1])
        try:
            frontier = Frontier.restore(int(row[0]), bytes(row[2]))
        except ValueError as exc:
            raise damaged(log, f"its newest checkpoint's frontier is damaged ({exc})") from exc
        if (
            cp is None
            or cp.size != frontier.size
            or cp.origin != log.origin
            or frontier.root().hex() != cp.root
            or not check_signature(cp)
            or (key is not None and cp.key != raw_public(key).hex())
        ):
            raise damaged(
                log, f"its newest checkpoint (size {row[0]}) does not verify with this key"
            )
    tail: list[tuple[int, Any, Any]] = []
    for seq, leaf, raw in log.leaves(frontier.size):
        if seq != frontier.size or leaf_hash(raw) != leaf:
            raise damaged(log, f"record {seq} does not match its hash or place")
        if len(tail) <= checkpoint_every + MAX_BATCH:
            data = orjson.loads(raw)
            tail.append((seq, data.get("w"), data.get("time")))
        frontier.append(leaf)
    if key is not None and tail:
        check = TailCheck(
            sessions(log, {str(w) for _, w, _ in tail}), tail[0][0], checkpoint_every, interval_s
        )
        if not all(check.feed(*item) for item in tail) or frontier.size > tail[-1][0] + 1:
            raise damaged(log, check.problem or "its unsigned tail is too long")
    return frontier, int(newest or 0)


def sessions(log: Reader, names: set[str]) -> Sessions:
    """What the checkpoints say of these writer sessions (from the indexed columns:
    start-up reads O(sessions), ``verify`` checks the columns against the bodies)."""
    found = Sessions()
    marks = ",".join("?" * len(names))
    for name, opened, closed in log.db.execute(
        "SELECT session, MIN(size), MAX(CASE WHEN state = 'closed' THEN size END) "
        f"FROM checkpoints WHERE session IN ({marks}) GROUP BY session",
        tuple(names),
    ):
        found.opened[str(name)] = int(opened)
        if closed is not None:
            found.closed[str(name)] = int(closed)
    for name in names:
        (at,) = log.db.execute(
            "SELECT MIN(size) FROM checkpoints WHERE ended LIKE ?", (f"%{name}%",)
        ).fetchone()
        if at is not None:
            found.closed[name] = min(int(at), found.closed.get(name, int(at)))
    return found


def damaged(log: Reader, problem: str) -> AuditError:
    return AuditError(
        f"will not write to the audit log {log.db.shown}: {problem}",
        hint="run `shipml audit verify`; keep the damaged log as evidence and move it "
        "away to start a new one",
    )
