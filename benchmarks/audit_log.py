"""Audit log: records per second in each durability mode, bytes stored per record,
start-up time of a large log, and verification speed.

Records are what `shipml serve` writes for one single-row V2 request to the
breast-cancer model: lineage (ONNX digest, run, dataset, commit), the validated input
(a 1x30 float32 matrix), label and probabilities. Two ways in: `append_many` in batches
of 1,000 (what group commit writes under load), and `append_async` from 256 concurrent
clients each waiting for its record (the model server's path). `process` and `power`
durability are interleaved over rounds; each figure is the median over rounds. With four
callers on uvloop (as `wrk -c4` keeps four requests in flight), the CPU the serving
process spends per record: what the audit costs a request.

    .venv/bin/python benchmarks/audit_log.py [--records 100000] [--rounds 3]
        [--startup-records 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from shipml.audit import AuditLog, verify
from shipml.audit.signing import fingerprint_of, load_or_create_key, raw_public


def _rows() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    return np.asarray(load_breast_cancer(return_X_y=True)[0][:500], dtype=np.float32)


ROWS = _rows()  # what the server records: the validated float32 row


def record(i: int) -> dict[str, Any]:
    p = float(np.float32((i % 97) / 97))
    return {
        "kind": "prediction",
        "model": "cancer",
        "version": "3",
        "onnx_sha256": "3f9a" * 16,
        "run_id": "8c2e" * 8,
        "datasets": {"cancer": "d41d" * 16},
        "git_commit": "a1b2c3d4" * 5,
        "image_digest": None,
        "request_id": f"5e0c1d2b3a4f-{i}",
        "variant": "direct",
        "protocol": "v2",
        "input": {"matrix": ROWS[i % 500 : i % 500 + 1]},
        "output": {"label": np.array([i % 2]), "probabilities": np.array([[p, 1 - p]])},
        "latency_ms": round(0.3 + (i % 50) / 100, 3),
        "trace_id": None,
    }


def open_log(folder: Path, durability: str) -> AuditLog:
    return AuditLog(
        folder / "audit.db",
        signing_key=folder / "signing.key",
        checkpoint_dir=folder / "checkpoints",
        durability=durability,
    )


def batched(folder: Path, records: list[dict[str, Any]], durability: str) -> float:
    log = open_log(folder, durability)
    start = time.perf_counter()
    for s in range(0, len(records), 1000):
        log.append_many(records[s : s + 1000])
    rate = len(records) / (time.perf_counter() - start)
    log.close()
    return rate


def concurrent(
    folder: Path, records: list[dict[str, Any]], durability: str, clients: int = 256
) -> float:
    """``clients`` callers, each appending its share and waiting for every record."""
    log = open_log(folder, durability)

    async def client(n: int) -> None:
        for i in range(n, len(records), clients):
            await log.append_async(records[i])

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        return len(records) / (time.perf_counter() - start)

    rate = asyncio.run(run())
    log.close()
    return rate


def cpu_per_record(folder: Path, records: list[dict[str, Any]], clients: int = 4) -> float:
    """Microseconds of the process's CPU (every thread) per record, ``clients`` callers
    on uvloop as the server has them (wrk -c4: four in flight): the log's share of a
    request's cost, including the record's canonical JSON, on the serving process."""
    import uvloop

    log = open_log(folder, "process")

    async def client(n: int) -> None:
        for i in range(n, len(records), clients):
            await log.append_async(records[i])

    async def run() -> None:
        await asyncio.gather(*(client(n) for n in range(clients)))

    start = time.process_time()
    uvloop.run(run())
    used = time.process_time() - start
    log.close()
    return used / len(records) * 1e6


def stored_bytes(folder: Path) -> int:
    """The database and its WAL (after a clean stop the WAL is copied in and empty)."""
    return sum(f.stat().st_size for f in folder.glob("audit.db*"))


def startup(n: int) -> tuple[float, float]:
    """Seconds to open a log of ``n`` records as a writer, and bytes per record."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        log = open_log(folder, "process")
        for s in range(0, n, 5000):
            log.append_many([record(i) for i in range(s, min(n, s + 5000))])
        log.close()
        per_record = stored_bytes(folder) / n
        times = []
        for _ in range(5):
            start = time.perf_counter()
            open_log(folder, "process").close()
            times.append(time.perf_counter() - start)
        return statistics.median(times), per_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--startup-records", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.records
    records = [record(i) for i in range(n)]
    rates: dict[str, list[float]] = {}
    per_record: list[float] = []
    verify_rate: list[float] = []
    cpu: list[float] = []
    for _ in range(args.rounds):
        for durability in ("process", "power"):  # interleaved: A B A B
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                rates.setdefault(f"append_many {durability}", []).append(
                    batched(folder / "b", records, durability)
                )
                rates.setdefault(f"append_async {durability}", []).append(
                    concurrent(folder / "c", records, durability)
                )
                if durability == "process":
                    cpu.append(cpu_per_record(folder / "d", records))
                    per_record.append(stored_bytes(folder / "c") / n)
                    key, _ = load_or_create_key(folder / "c" / "signing.key")
                    log = AuditLog(folder / "c" / "audit.db", writer=False)
                    start = time.perf_counter()
                    result = verify(
                        log,
                        pin=fingerprint_of(raw_public(key)),
                        checkpoint_dir=folder / "c" / "checkpoints",
                    )
                    verify_rate.append(n / (time.perf_counter() - start))
                    assert result.ok, result.problem
                    log.close()
    print(f"records per run: {n:,}; median of {args.rounds} interleaved rounds")
    for name, values in rates.items():
        print(f"{name:<28}{statistics.median(values):>12,.0f} records/s")
    print(f"{'append_async process, 4':<28}{statistics.median(cpu):>12.1f} us CPU per record")
    print(f"{'verify':<28}{statistics.median(verify_rate):>12,.0f} records/s")
    print(f"{'stored per record':<28}{statistics.median(per_record):>12,.0f} bytes")
    if args.startup_records:
        seconds, size = startup(args.startup_records)
        print(
            f"open a log of {args.startup_records:,} records: {seconds * 1000:.1f} ms "
            f"({size:,.0f} bytes per record)"
        )


if __name__ == "__main__":
    main()
