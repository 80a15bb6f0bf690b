"""Group commit on a thread: the ``power`` durability mode, and PostgreSQL.

Callers on any event loop hand a record over and wait; the thread writes whatever is
queued (up to ``MAX_BATCH`` records, after an optional window for more) in one
transaction, one commit and, in ``power`` mode, one fsync, then wakes each event loop
once for all of its records.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from shipml.audit.tail import MAX_BATCH

Write = Callable[[list[dict[str, Any]]], list[Any]]  # one outcome per record


class Committer:
    def __init__(self, write: Write, window_s: float) -> None:
        self._write = write
        self._window_s = window_s
        self._queue: deque[tuple[dict[str, Any], Any, asyncio.Future[int]]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    async def submit(self, record: dict[str, Any]) -> int:
        """Resumes once the record's transaction is committed; its sequence number."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, daemon=True, name="shipml-audit-writer"
            )
            self._thread.start()
        self._queue.append((record, loop, future))
        self._wake.set()
        return await future

    def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.wait(timeout=0.5)  # a timeout, so a missed wake-up cannot hang
                self._wake.clear()
                continue
            if self._window_s:
                time.sleep(self._window_s)
            batch: list[tuple[dict[str, Any], Any, asyncio.Future[int]]] = []
            while self._queue and len(batch) < MAX_BATCH:
                batch.append(self._queue.popleft())
            outcome = self._write([record for record, _, _ in batch])
            # One wake-up per event loop for the whole batch, not one per record.
            by_loop: dict[Any, list[tuple[asyncio.Future[int], Any]]] = {}
            for (_, loop, future), value in zip(batch, outcome, strict=True):
                by_loop.setdefault(loop, []).append((future, value))
            for loop, items in by_loop.items():
                if not loop.is_closed():
                    loop.call_soon_threadsafe(settle, items)

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def settle(items: list[tuple[asyncio.Future[int], Any]]) -> None:
    """Resolve futures with a sequence number or an exception."""
    for future, value in items:
        if future.done():
            continue
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)
