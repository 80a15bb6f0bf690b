"""Shadow traffic: after the champion's answer is sent, a share of requests is mirrored
to every challenger through a queue bounded in requests (``queue_size``) and in bytes
(``MAX_QUEUED_BYTES``: 1,000 bodies of 10 MiB would be 10 GiB held for a slow shadow);
a failing shadow is left alone by a circuit breaker. Nothing here can change what a
client gets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import orjson

from shipml.rollout.analysis import ERROR, OK, Analysis
from shipml.rollout.policy import TrafficPolicy
from shipml.rollout.proxy import Upstream, outputs_of

log = logging.getLogger("shipml.rollout")
WORKERS = 4
MAX_QUEUED_BYTES = 64 * 1024 * 1024  # of request bodies waiting for the shadows
Mirrored = tuple[str, bytes, bytes, bytes | None, dict[str, Any]]


class Shadow:
    def __init__(
        self, policy: TrafficPolicy, upstream: Upstream, analysis: Analysis, rng: random.Random
    ) -> None:
        self.policy = policy
        self.upstream = upstream
        self.analysis = analysis
        self.rng = rng
        self.counters: dict[str, int] = {
            "mirrored": 0,
            "dropped": 0,
            "shadow_failed": 0,
            "skipped_circuit_open": 0,
        }
        # Per shadow: consecutive failures and, while its circuit is open, until when.
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self.max_queued_bytes = MAX_QUEUED_BYTES
        self.queued_bytes = 0
        self._queue: asyncio.Queue[Mirrored] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.policy.queue_size)
        self.queued_bytes = 0
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(WORKERS)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._queue, self.queued_bytes = None, 0  # what waited is not mirrored

    def mirror(
        self, path: str, body: bytes, rid: bytes, trace: bytes | None, primary: dict[str, Any]
    ) -> None:
        """Queue the request for the shadows (``fraction`` of the time), or drop it."""
        if self._queue is None or self.rng.random() >= self.policy.shadow_fraction:
            return
        if self.queued_bytes + len(body) > self.max_queued_bytes:
            self.counters["dropped"] += 1
            return
        try:
            self._queue.put_nowait((path, body, rid, trace, primary))
        except asyncio.QueueFull:
            self.counters["dropped"] += 1
            return
        self.counters["mirrored"] += 1
        self.queued_bytes += len(body)

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                await self._one(*item)
            except Exception:  # a bug must not silently stop mirroring for good
                self.counters["shadow_failed"] += 1
                log.exception("shadow mirroring failed")
            finally:
                self.queued_bytes -= len(item[1])

    async def _one(
        self, path: str, body: bytes, rid: bytes, trace: bytes | None, primary: dict[str, Any]
    ) -> None:
        for shadow in self.policy.challengers:
            if time.monotonic() < self._open_until.get(shadow.name, 0.0):
                self.counters["skipped_circuit_open"] += 1  # a dead shadow costs nothing
                continue
            started = time.perf_counter()
            status, answer = await self.upstream.send(shadow, path, body, rid, trace)
            seconds = time.perf_counter() - started
            if status != 200:  # the champion answered this request: any other answer fails
                self.counters["shadow_failed"] += 1
                self.analysis.record(shadow.name, seconds, ERROR)
                self._failed(shadow.name)
                continue
            self._failures[shadow.name] = 0
            self.analysis.record(shadow.name, seconds, OK)
            try:
                out = outputs_of(path, orjson.loads(answer))
            except orjson.JSONDecodeError:
                continue
            self.analysis.compare(shadow.name, primary, out, rid.decode("latin-1"))

    def _failed(self, name: str, threshold: int = 5) -> None:
        """Circuit breaker: after ``threshold`` failures in a row, stop calling the shadow
        for 1 s, doubling up to 30 s while it keeps failing."""
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        if failures >= threshold:
            pause = min(30.0, 2.0 ** (failures - threshold))
            self._open_until[name] = time.monotonic() + pause
