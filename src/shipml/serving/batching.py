"""Adaptive micro-batching: concurrent requests share one onnxruntime call.

A request puts its validated columns on a queue and awaits its answer. The first
request on an empty queue schedules a flush for the event loop's next turn; every
request parsed in the meantime joins that batch (up to ``max_batch_size``). A lone
client therefore waits for nothing but one loop turn, and under load batches form by
themselves. ``max_wait_ms`` can add a short wait to gather larger batches.

A lone client pays even that loop turn for nothing, so the batcher watches whether
requests meet: after a flush that found one request alone, the next ``SOLO_RUNS``
requests that find the queue empty run the model at once (no future, no loop turn), and
then one goes through the queue again as a probe. A probe that meets others switches
batching back on until a flush finds a request alone again. With ``max_wait_ms`` set,
every request waits for its batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shipml.serving.predictor import Outputs, Predictor, non_finite
from shipml.serving.validation import Rows


@dataclass
class _Pending:
    rows: Rows
    future: asyncio.Future[Outputs]


class Batcher:
    SOLO_RUNS = 16  # direct runs between two probes while requests arrive alone

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        on_scored: Callable[[Rows, np.ndarray], None] | None = None,
    ) -> None:
        """``on_batch``: called with the rows of each model run before it; ``on_scored``:
        with the rows and the predicted labels after it (the live monitor's one append
        per run, not per request)."""
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.on_scored = on_scored
        self._queue: list[_Pending] = []
        self._scheduled = False
        self._solo = 0  # direct runs left before the next probe through the queue

    async def predict(self, rows: Rows) -> Outputs:
        if self._solo and not self._queue:
            self._solo -= 1
            return self._direct(rows)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.append(_Pending(rows, future))
        if not self._scheduled:
            self._scheduled = True
            if self.max_wait > 0 and len(self._queue) < self.max_batch_size:
                loop.call_later(self.max_wait, self._flush)
            else:
                loop.call_soon(self._flush)
        elif len(self._queue) >= self.max_batch_size:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            batch: list[_Pending] = []
            taken = 0
            while self._queue and (
                not batch or taken + self._queue[0].rows.n <= self.max_batch_size
            ):
                item = self._queue.pop(0)
                batch.append(item)
                taken += item.rows.n
            self._run(batch, taken)

    def _direct(self, rows: Rows) -> Outputs:
        """A request alone: the model runs now, as a batch of one."""
        if self.on_batch is not None:
            self.on_batch(rows.n)
        started = time.time_ns()
        out = self.predictor.run(self.predictor.feeds(rows))
        out.timing = (started, time.time_ns(), rows.n)
        if self.on_scored is not None:
            self.on_scored(rows, out.labels)
        error = non_finite(out)
        if error is not None:
            raise error
        return out

    def _run(self, batch: list[_Pending], total: int) -> None:
        if self.max_wait == 0:  # alone: run the next ones directly; met others: batch
            self._solo = self.SOLO_RUNS if len(batch) == 1 and not self._queue else 0
        if self.on_batch is not None:
            self.on_batch(total)
        if len(batch) == 1:
            rows = batch[0].rows
        elif all(p.rows.matrix is not None for p in batch):
            rows = Rows(total, matrix=np.concatenate([p.rows.matrix for p in batch]))
        else:
            names = self.predictor.names
            rows = Rows(
                total,
                columns={
                    n: np.concatenate([p.rows.column(n, i) for p in batch])
                    for i, n in enumerate(names)
                },
            )
        started = time.time_ns()
        try:
            out = self.predictor.run(self.predictor.feeds(rows))
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        timing = (started, time.time_ns(), total)
        if self.on_scored is not None:
            self.on_scored(rows, out.labels)
        checked = non_finite(out) is not None  # one reduction; then each request's own
        start = 0
        for p in batch:
            end = start + p.rows.n
            proba = out.probabilities[start:end] if out.probabilities is not None else None
            piece = Outputs(out.labels[start:end], proba, timing)
            error = non_finite(piece) if checked else None
            if p.future.done():
                pass
            elif error is not None:
                p.future.set_exception(error)
            else:
                p.future.set_result(piece)
            start = end
