"""Model runs waiting for the live monitor: bytes in, the same rows and labels out, in
order; other kinds of runs kept as they are; the oldest rows dropped beyond the limit."""

from __future__ import annotations

import numpy as np

from shipml.serving.pending import PendingRuns
from shipml.serving.validation import Rows


def _pending(**options: int) -> tuple[PendingRuns, list[int]]:
    woken: list[int] = []
    settings = {"drain_at": 1000, "limit": 10_000, **options}
    pending = PendingRuns(3, wake=lambda: woken.append(1), **settings)
    return pending, woken


def _run(first: float, n: int = 1) -> Rows:
    values = np.arange(first, first + 3 * n, dtype=np.float32).reshape(n, 3)
    return Rows(n, matrix=values)


def test_runs_come_out_as_one_matrix_with_their_labels_in_order() -> None:
    pending, _ = _pending()
    pending.add(_run(0), np.array([7]))
    pending.add(_run(3, n=2), np.array([8, 9]))
    matrix, labels, others = pending.take()
    assert matrix.tolist() == np.arange(9, dtype=np.float32).reshape(3, 3).tolist()
    assert labels is not None and labels.tolist() == [7, 8, 9] and labels.dtype == np.int64
    assert others == [] and pending.buffered == 0
    matrix, labels, _ = pending.take()  # taken once
    assert matrix.shape == (0, 3) and labels is None


def test_other_kinds_of_runs_wait_as_they_are() -> None:
    pending, _ = _pending()
    pending.add(_run(0), np.array([1]))
    strings = np.array(["yes"], dtype=object)
    pending.add(_run(3), strings)  # string labels
    pending.add(_run(6), np.array([0.5]))  # float labels after int ones: not mixed
    wide = Rows(1, matrix=np.zeros((1, 3), dtype=np.float64))
    pending.add(wide, np.array([2]))  # a float64 matrix
    matrix, labels, others = pending.take()
    assert matrix.tolist() == [[0.0, 1.0, 2.0]] and labels is not None and labels.tolist() == [1]
    assert [o[1].tolist() for o in others] == [["yes"], [0.5], [2]]
    pending.add(_run(0), np.array([0.25]))  # an empty buffer takes the new label type
    _, labels, _ = pending.take()
    assert labels is not None and labels.tolist() == [0.25]


def test_a_full_buffer_wakes_once_and_the_oldest_rows_go_beyond_the_limit() -> None:
    pending, woken = _pending(drain_at=4, limit=6)
    for i in range(7):
        pending.add(_run(3 * i), np.array([i]))
    assert woken == [1]  # once at 4 rows, not again while they wait
    assert pending.dropped == 3 and pending.buffered == 4  # 7 > 6: the older 3 dropped
    matrix, labels, _ = pending.take()
    assert labels is not None and labels.tolist() == [3, 4, 5, 6]
    assert matrix[:, 0].tolist() == [9.0, 12.0, 15.0, 18.0]
    for i in range(4):
        pending.add(_run(0), np.array([i]))
    assert woken == [1, 1]  # taken: a new full buffer wakes again
