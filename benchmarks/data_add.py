"""`shipml data add` against reading the same file, at 1M rows, interleaved over rounds.

Writes a CSV and a Parquet file of 1M rows × 20 columns (15 floats with 6 decimals, 5
strings of four categories), then in each round, for each file and in fresh processes,
times (in alternating order) reading it with pandas (``pd.read_csv`` /
``pd.read_parquet``, what the read of a user's own code costs) and snapshotting it
into a new dataset store (``DatasetStore.add``, what `shipml data add` does: read the
bytes, parse, digest, schema, profile, write Parquet and the catalog). Imports are not
timed. Reports the medians and the median of per-round ratios (target: ≤ 1.5).

``--floor`` also times the least any add must do: the same read, then the snapshot's
content digest of the frame read (``shipml.data.table_digest``, sha256 over every cell)
and nothing else — no schema, profile or Parquet written.

    .venv/bin/python benchmarks/data_add.py [--rounds 5] [--rows 1000000] [--profile]
        [--before CHECKOUT]    # also the add of another checkout (PYTHONPATH=CHECKOUT/src)
        [--floor]              # also read + digest alone
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

READ = """
import sys, time
import pandas as pd
path = sys.argv[1]
started = time.perf_counter()
df = pd.read_csv(path, low_memory=False) if path.endswith(".csv") else pd.read_parquet(path)
print(time.perf_counter() - started)
"""

FLOOR = """
import sys, time
import pandas as pd
from shipml.data import table_digest
path = sys.argv[1]
started = time.perf_counter()
df = pd.read_csv(path, low_memory=False) if path.endswith(".csv") else pd.read_parquet(path)
table_digest(df)
print(time.perf_counter() - started)
"""

ADD = """
import shutil, sys, tempfile, time
from shipml.data import DatasetStore
root = tempfile.mkdtemp(prefix="shipml-add-")  # removed after: each store holds ~120 MB
try:
    store = DatasetStore(root)
    started = time.perf_counter()
    if len(sys.argv) > 2:
        import cProfile, pstats
        cProfile.run("store.add('bench', sys.argv[1])", sys.argv[2])
        pstats.Stats(sys.argv[2]).sort_stats("cumulative").print_stats(25)
    else:
        store.add("bench", sys.argv[1])
    print(time.perf_counter() - started)
finally:
    shutil.rmtree(root, ignore_errors=True)
"""


def make_files(folder: Path, rows: int) -> list[Path]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    floats = {f"n{i}": rng.normal(size=rows).round(6) for i in range(15)}
    words = np.array(["alpha", "beta", "gamma", "delta"], dtype=object)
    strings = {f"c{i}": words[rng.integers(0, 4, rows)] for i in range(5)}
    frame = pd.DataFrame({**floats, **strings})
    csv, parquet = folder / "table.csv", folder / "table.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    return [csv, parquet]


def seconds(code: str, *args: str, pythonpath: str | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env
    ).stdout
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--profile", action="store_true", help="cProfile one add of each file.")
    parser.add_argument("--before", type=Path, help="Also time the add of this checkout.")
    parser.add_argument("--floor", action="store_true", help="Also time read + digest alone.")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="shipml-bench-add-"))
    try:
        run(args, make_files(folder, args.rows), folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, files: list[Path], folder: Path) -> None:
    if args.profile:
        for path in files:
            print(
                subprocess.run(
                    [sys.executable, "-c", ADD, str(path), str(folder / "profile")],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        return
    before = str(args.before.resolve() / "src") if args.before else None
    kinds = ["read", "add"] + (["add before"] if before else [])
    kinds += ["read + digest"] if args.floor else []
    codes = {"read": READ, "read + digest": FLOOR}
    for path in files:
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(args.rounds):
            for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                code = codes.get(kind, ADD)
                pythonpath = before if kind == "add before" else None
                times[kind].append(seconds(code, str(path), pythonpath=pythonpath))
        size = path.stat().st_size / 2**20
        print(f"{path.name} ({args.rows:,} rows x 20 columns, {size:.0f} MiB), seconds")
        for kind, values in times.items():
            shown = " ".join(f"{v:.2f}" for v in values)
            print(f"  {kind:<14}{statistics.median(values):>6.2f} s   ({shown})")
        for kind in kinds[1:]:
            ratios = [a / b for a, b in zip(times[kind], times["read"], strict=True)]
            print(f"  {kind} / read: {statistics.median(ratios):.2f} (median of per-round ratios)")
    print("target: add <= 1.5 x read")


if __name__ == "__main__":
    main()
