"""A writer's background thread: signs on the time cadence, and copies SQLite's WAL.

While records arrive, a checkpoint is signed within ``checkpoint_interval_s`` of the
first record no checkpoint covers, so the unsigned tail is bounded in time as well as
in count (the count is the writer's own business, on its commit path). For SQLite the
thread also copies the WAL into the database every second: that copy fsyncs even in
``process`` durability, so it never runs on a commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from shipml.errors import AuditError

WAL_COPY_EVERY_S = 1.0


class Cadence:
    """``sign()`` signs an ``open`` checkpoint (under the writer's lock); ``wal()`` makes
    the database's WAL copier (None for PostgreSQL), on the thread that uses it."""

    def __init__(self, sign: Callable[[], Any], interval_s: float, wal: Callable[[], Any]) -> None:
        self._sign = sign
        self._interval_s = interval_s
        self._make_wal = wal
        self._tick = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.since: float | None = None  # when the oldest unsigned record was committed

    def start(self) -> None:
        """Run the thread (from the first commit on)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, daemon=True, name="shipml-audit-signer"
            )
            self._thread.start()

    def unsigned(self) -> None:
        """Records no checkpoint covers were committed."""
        self.start()
        if self.since is None:
            self.since = time.monotonic()
            self._tick.set()

    def signed(self) -> None:
        """A checkpoint covers every record committed so far."""
        self.since = None

    def stop(self) -> None:
        self._stopping = True
        self._tick.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        wal = self._make_wal()
        copied = time.monotonic()
        while not self._stopping:
            if wal is not None and time.monotonic() - copied >= WAL_COPY_EVERY_S:
                wal()
                copied = time.monotonic()
            since = self.since
            wait = 0.5 if since is None else since + self._interval_s - time.monotonic()
            if wait > 0:
                self._tick.wait(timeout=min(wait, 0.5))
                self._tick.clear()
                continue
            try:
                self._sign()
            except AuditError:
                self.since = time.monotonic()  # try again a cadence later
