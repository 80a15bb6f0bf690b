"""Audit log throughput: records per second, durable (SQLite WAL, synchronous=FULL).

Two ways in: `append_many` batches of 1,000 (what the group-commit writer does under
load), and `append_async` from many concurrent coroutines (the model server's path:
each caller waits for its record to be durable). Records look like real prediction
records (lineage, a 30-feature input, label and probabilities). Also reports the
cost of `verify` per record.

    .venv/bin/python benchmarks/audit_log.py [--records 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from shipml.audit import AuditLog, verify


def record(i: int) -> dict[str, object]:
    return {
        "kind": "prediction",
        "request_id": f"bench-{i}",
        "variant": "direct",
        "model": "cancer",
        "version": "3",
        "onnx_sha256": "ab" * 32,
        "run_id": "f" * 32,
        "datasets": {"cancer": "cd" * 32},
        "git_commit": "e" * 40,
        "image_digest": None,
        "input": {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 30],
                    "datatype": "FP32",
                    "data": [float(j) + i for j in range(30)],
                }
            ]
        },
        "output": {"label": [i % 2], "probabilities": [[0.25, 0.75]]},
        "latency_ms": 0.42,
        "trace_id": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    n = parser.parse_args().records
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        log = AuditLog(
            folder / "a.db",
            signing_key=folder / "k.pem",
            checkpoint_dir=folder / "cp",
            checkpoint_every=10_000,
        )
        records = [record(i) for i in range(n)]
        start = time.perf_counter()
        for s in range(0, n, 1000):
            log.append_many(records[s : s + 1000])
        batched = n / (time.perf_counter() - start)

        async def concurrent() -> float:
            start = time.perf_counter()
            sem = asyncio.Semaphore(256)  # 256 requests in flight, like a busy server

            async def one(i: int) -> None:
                async with sem:
                    await log.append_async(records[i])

            await asyncio.gather(*(one(i) for i in range(n)))
            return n / (time.perf_counter() - start)

        grouped = asyncio.run(concurrent())
        log.close()
        start = time.perf_counter()
        result = verify(AuditLog(folder / "a.db"), checkpoint_dir=folder / "cp")
        verify_s = time.perf_counter() - start
        assert result.ok, result.problem
    print(f"records per run: {n:,}")
    print(f"append_many (batches of 1,000)     {batched:>10,.0f} records/s")
    print(f"append_async (256 in flight)       {grouped:>10,.0f} records/s")
    print(
        f"verify ({2 * n:,} records, {result.checkpoints} checkpoints) {verify_s:.2f} s "
        f"({2 * n / verify_s:,.0f} records/s)"
    )


if __name__ == "__main__":
    main()
