"""The unsigned tail: the records after the newest signed checkpoint.

A running writer signs a checkpoint at least every ``checkpoint_interval_s`` while
records arrive and every ``checkpoint_every`` records, and a closing one when it stops
cleanly. So the records no checkpoint covers can only be the last cadence of a writer
that is still running or died (``kill -9``, power loss). Anything else in the tail is
tampering, and these rules say so:

- each tail record names its writer session (``w``), which must have signed a checkpoint
  before it and must be neither ``closed`` (a record after a clean stop was appended by
  someone else) nor ended by a writer that started later (every ``start`` checkpoint
  ends the sessions then open: a dead writer cannot be posed as); a writer that signed
  nothing cannot have written it: checkpoints were deleted;
- the tail holds at most what one cadence leaves unsigned: fewer than ``checkpoint_every``
  records before its last commit (the records of one commit share their ``time``), and its
  records span at most ``checkpoint_interval_s`` plus a grace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shipml.audit.signing import Checkpoint

MAX_BATCH = 5000  # records per commit (the writer's group-commit batch)


def grace(interval_s: float) -> float:
    """How far past the cadence a writer may be late (a busy event loop, signing time)."""
    return max(5.0, interval_s)


@dataclass
class Sessions:
    """Writer sessions as the signed checkpoints tell them."""

    opened: dict[str, int] = field(default_factory=dict)  # session -> size it opened at
    closed: dict[str, int] = field(default_factory=dict)  # session -> size it closed at
    live: set[str] = field(default_factory=set)  # open now: neither closed nor ended

    @classmethod
    def of(cls, checkpoints: list[Checkpoint]) -> Sessions:
        sessions = cls()
        for cp in sorted(checkpoints, key=lambda c: c.size):
            sessions.saw(cp)
        return sessions

    def saw(self, cp: Checkpoint) -> set[str]:
        """A checkpoint: its session has opened; a closing one, and the sessions it
        ended, write nothing from its size on. Returns the sessions a ``start`` should
        have ended (they were open) but did not."""
        self.opened.setdefault(cp.session, cp.size)
        missed = self.live - set(ended(cp)) - {cp.session} if cp.state == "start" else set()
        for name in ([cp.session] if cp.state == "closed" else []) + ended(cp):
            self.closed.setdefault(name, cp.size)
            self.live.discard(name)
        if cp.state != "closed":
            self.live.add(cp.session)
        return missed


def ended(cp: Checkpoint) -> list[str]:
    return [name for name in cp.ended.split(",") if name]


@dataclass
class TailCheck:
    """Fed the tail's records in order; ``problem`` is the first rule broken."""

    sessions: Sessions
    start: int  # the newest checkpoint's size
    checkpoint_every: int
    interval_s: float
    count: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    writers: set[str] = field(default_factory=set)
    commit: tuple[str, str] = ("", "")  # (time, writer) of the commit being read
    before_commit: int = 0  # tail records before that commit
    problem: str = ""
    first_bad: int | None = None

    def feed(self, seq: int, session: object, time: object) -> bool:
        """False once a rule is broken (the caller may stop reading)."""
        if self.problem:
            return False
        self.count += 1
        name = str(session)
        opened = self.sessions.opened.get(name)
        if opened is None or opened > seq:
            return self._bad(
                seq,
                f"record {seq} is after the last signed checkpoint and its writer {name!r} "
                "signed no checkpoint before it: checkpoints were deleted, or the record "
                "was forged",
            )
        if name in self.sessions.closed:
            return self._bad(
                seq,
                f"record {seq} was appended after its writer {name!r} closed the log, or "
                f"was ended by a later writer (at {self.sessions.closed[name]} records): "
                "written by someone else",
            )
        self.writers.add(name)
        if (str(time), name) != self.commit:
            self.commit = (str(time), name)
            self.before_commit = self.count - 1
        if self.before_commit >= self.checkpoint_every or self.count > self.limit:
            return self._bad(
                self.start,
                f"{self.count} or more records after the last signed checkpoint, more than a "
                f"writer leaves unsigned (checkpoint_every = {self.checkpoint_every}): "
                "checkpoints were deleted",
            )
        try:
            when = datetime.fromisoformat(str(time))
        except ValueError:
            return self._bad(seq, f"record {seq} has no valid time: {str(time)[:40]!r}")
        self.first_time = self.first_time or when
        self.last_time = when
        span = abs((when - self.first_time).total_seconds())
        if span > self.interval_s + grace(self.interval_s):
            return self._bad(
                self.start,
                f"the records after the last signed checkpoint span {span:.1f} s, but a "
                f"running writer signs every {self.interval_s:g} s: checkpoints were deleted",
            )
        return True

    @property
    def limit(self) -> int:
        return self.checkpoint_every + MAX_BATCH

    def _bad(self, seq: int, problem: str) -> bool:
        self.problem = problem
        self.first_bad = seq
        return False

    def note(self) -> str:
        if not self.count:
            return ""
        who = ", ".join(sorted(self.writers))
        return (
            f"{self.count} record(s) from {self.start} on are not yet covered by a signed "
            f"checkpoint (writer {who}: still running, or stopped without signing; the next "
            "writer to open the log signs them). Changes to them cannot be detected."
        )
