"""Model runs waiting for the live monitor's thread (``serving/live.py``): what the
request path hands over, held as bytes until the thread takes it all at once."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

_FLOAT32 = np.dtype(np.float32)


class PendingRuns:
    """The rows and predicted labels of model runs not yet counted.

    ``add`` is called on the event loop once per model run. The usual run (an
    all-numeric model's float32 matrix, numeric labels) leaves no object behind: its
    rows and labels are appended as bytes to two buffers, under a lock that ``take``
    holds only to swap them. Runs of another kind (a model with string features, string
    labels) wait in ``others`` as they are. Why bytes: with one object per request, the
    event loop allocated and the counting thread freed thousands of them while holding
    the GIL, which cost the answers more than the counting (benchmarks/README.md).

    At most ``limit`` rows wait; beyond, the oldest are dropped and counted
    (``dropped``): the answers never wait for the counting. ``wake`` is called once the
    buffers hold ``drain_at`` rows, so that little is ever held.
    """

    def __init__(self, width: int, *, drain_at: int, limit: int, wake: Callable[[], None]) -> None:
        self.width, self.drain_at, self.limit, self.wake = width, drain_at, limit, wake
        self.rows, self.labels, self.buffered = bytearray(), bytearray(), 0
        self.label_dtype: np.dtype[Any] | None = None
        self.others: deque[tuple[Any, np.ndarray]] = deque()
        self.dropped = 0
        self._woken = False  # ``wake`` was called for the rows buffered now
        self._lock = threading.Lock()

    def add(self, rows: Any, labels: np.ndarray) -> None:
        """One model run's rows (``validation.Rows``) and its predicted labels."""
        matrix = rows.matrix
        if (
            matrix is not None
            and matrix.dtype is _FLOAT32
            and labels.dtype.kind in "biuf"
            and len(labels) == len(matrix)
            and matrix.flags.c_contiguous
        ):
            with self._lock:
                if labels.dtype != self.label_dtype:
                    if self.rows:  # not the buffered labels' type: kept aside
                        self._add_other(rows, labels)
                        return
                    self.label_dtype = labels.dtype
                self.rows.extend(matrix)  # the buffer protocol: its bytes
                self.labels.extend(labels)
                self.buffered += len(labels)
                if self.buffered >= self.drain_at and not self._woken:
                    self._woken = True
                    self.wake()
                elif self.buffered > self.limit:
                    self._drop_older_half()
        else:
            self._add_other(rows, labels)

    def _add_other(self, rows: Any, labels: np.ndarray) -> None:
        others = self.others
        others.append((rows, labels))
        if len(others) == self.drain_at:
            self.wake()
        elif len(others) > self.limit:
            self.dropped += len(others.popleft()[1])

    def _drop_older_half(self) -> None:
        half = self.buffered // 2
        del self.rows[: half * self.width * 4]
        del self.labels[: half * len(self.labels) // self.buffered]
        self.buffered -= half
        self.dropped += half

    def take(self) -> tuple[np.ndarray, np.ndarray | None, list[tuple[Any, np.ndarray]]]:
        """Everything waiting, at once (the buffers start afresh): the buffered rows as a
        [rows, width] float32 matrix and their labels (None: nothing buffered), and the
        other runs as they came."""
        with self._lock:
            rows, labels, dtype = self.rows, self.labels, self.label_dtype
            others = list(self.others)
            self.rows, self.labels, self.buffered = bytearray(), bytearray(), 0
            self._woken = False
            self.others.clear()
        matrix = np.frombuffer(rows, dtype=np.float32).reshape(-1, self.width)
        return matrix, np.frombuffer(labels, dtype=dtype) if labels else None, others
