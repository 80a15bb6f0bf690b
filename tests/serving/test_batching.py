"""The micro-batcher: a lone request runs at once, concurrent requests share one run."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shipml.model import ModelPackage
from shipml.serving.batching import Batcher
from shipml.serving.predictor import Predictor
from shipml.serving.validation import Rows


def _batcher(package: ModelPackage, **options: float) -> tuple[Batcher, list[int], Rows]:
    predictor = Predictor(package, name="cancer")
    sizes: list[int] = []
    batcher = Batcher(predictor, on_batch=sizes.append, **options)  # type: ignore[arg-type]
    rows = Rows(1, matrix=np.zeros((1, len(predictor.names)), dtype=np.float32))
    return batcher, sizes, rows


def test_lone_requests_run_at_once_and_concurrent_ones_are_batched(cancer_package) -> None:
    batcher, sizes, rows = _batcher(cancer_package)

    async def scenario() -> tuple[int, list[int]]:
        loop = asyncio.get_running_loop()
        turns = 0

        def tick() -> None:
            nonlocal turns
            turns += 1

        await batcher.predict(rows)  # the first goes through the queue: it is alone
        before = turns
        for _ in range(batcher.SOLO_RUNS):  # alone: no loop turn, one run each
            loop.call_soon(tick)
            out = await batcher.predict(rows)
            assert out.timing is not None and out.timing[2] == 1
        direct_turns = turns - before
        await batcher.predict(rows)  # a probe through the queue, alone again
        for _ in range(4):  # bursts: within SOLO_RUNS requests a probe meets the others
            concurrent = await asyncio.gather(*(batcher.predict(rows) for _ in range(8)))
            assert all(len(o.labels) == 1 for o in concurrent)
        return direct_turns, sizes

    direct_turns, sizes = asyncio.run(scenario())
    assert direct_turns == 0  # the lone requests never yielded to the loop
    assert sizes[: 2 + batcher.SOLO_RUNS] == [1] * (2 + batcher.SOLO_RUNS)
    later = sizes[2 + batcher.SOLO_RUNS :]
    assert sum(later) == 32
    assert later[-1] == 8  # once requests meet, they are batched until one comes alone


def test_each_model_run_hands_its_rows_and_labels_over_once(cancer_package) -> None:
    """The live monitor's hook: one call per run (queued, direct or batched), with the
    run's rows and its predicted labels in request order."""
    predictor = Predictor(cancer_package, name="cancer")
    runs: list[tuple[Rows, np.ndarray]] = []
    width = len(predictor.names)
    rows = [Rows(1, matrix=np.full((1, width), float(v), dtype=np.float32)) for v in (0, 1e4, 0)]

    def hook(rows: Rows, labels: np.ndarray) -> None:
        runs.append((rows, labels))

    async def scenario() -> list[np.ndarray]:
        lone = Batcher(predictor, on_scored=hook)
        first = await lone.predict(rows[0])  # through the queue, alone
        second = await lone.predict(rows[1])  # then at once (a direct run)
        waiting = Batcher(predictor, max_wait_ms=5.0, on_scored=hook)
        together = await asyncio.gather(*(waiting.predict(r) for r in rows))
        return [first.labels, second.labels, *(o.labels for o in together)]

    answers = asyncio.run(scenario())
    assert [r.n for r, _ in runs] == [1, 1, 3]
    batched = runs[2][0].matrix
    assert batched is not None and batched[:, 0].tolist() == [0, 1e4, 0]
    assert [labels.tolist() for _, labels in runs[:2]] == [a.tolist() for a in answers[:2]]
    assert runs[2][1].tolist() == [a[0] for a in answers[2:]]


def test_with_max_wait_every_request_waits_for_its_batch(cancer_package) -> None:
    batcher, sizes, rows = _batcher(cancer_package, max_wait_ms=1.0)

    async def scenario() -> None:
        for _ in range(4):
            await batcher.predict(rows)
        await asyncio.gather(*(batcher.predict(rows) for _ in range(5)))

    asyncio.run(scenario())
    assert batcher._solo == 0
    assert sizes == [1, 1, 1, 1, 5]


def test_a_failing_direct_run_raises_to_its_request(cancer_package) -> None:
    batcher, _, rows = _batcher(cancer_package)
    bad = Rows(1, matrix=np.zeros((1, 3), dtype=np.float32))  # the wrong number of features

    async def scenario() -> None:
        await batcher.predict(rows)
        assert batcher._solo > 0
        try:
            await batcher.predict(bad)
        except Exception as exc:
            assert "the model failed" in str(exc)
        else:
            raise AssertionError("a bad input must fail")
        out = await batcher.predict(rows)  # the batcher keeps serving
        assert len(out.labels) == 1

    asyncio.run(scenario())


def test_an_answer_holding_nan_fails_its_own_request_only(cancer_package) -> None:
    """All features at float32's largest value: the model's probabilities overflow to NaN.
    JSON would answer null probabilities beside a label: that request fails, its batch
    neighbours get their answers."""
    from shipml.errors import InferenceFailed

    batcher, sizes, rows = _batcher(cancer_package, max_wait_ms=1.0)
    extreme = Rows(1, matrix=np.full((1, rows.matrix.shape[1]), 3.4e38, dtype=np.float32))
    direct, _, _ = _batcher(cancer_package)

    async def scenario() -> list[object]:
        return await asyncio.gather(
            batcher.predict(rows),
            batcher.predict(extreme),
            batcher.predict(rows),
            return_exceptions=True,
        )

    first, failed, third = asyncio.run(scenario())
    assert sizes == [3]  # one model run for the three
    assert isinstance(failed, InferenceFailed), failed
    assert "NaN or infinity in its probabilities for row 0" in failed.message
    for answer in (first, third):
        assert not isinstance(answer, BaseException)
        assert np.isfinite(answer.probabilities).all() and len(answer.labels) == 1
    with pytest.raises(InferenceFailed, match="NaN or infinity in its probabilities"):
        asyncio.run(direct.predict(extreme))  # alone, the direct path
