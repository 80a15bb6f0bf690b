"""Drift benchmark: shipml's streaming drift (shipml.data.drift) against Evidently's
DataDriftPreset, on the same data: a reference of 100,000 rows and a current window of
1,000,000 rows × 20 columns (15 numeric, 5 categorical; 4 columns drifted).

shipml reads the current window from Parquet in Arrow batches and counts it against the
reference profile (never holding the window); Evidently gets both as DataFrames (as its
API takes them). What is timed, on both sides: from the current file on disk to the
verdicts (reading it included; imports and the reference excluded — the reference is
the package's profile for shipml, a DataFrame for Evidently). Each side runs in its own
process — wall and CPU time, peak RSS of the whole process — in alternation over rounds
(A B A B ...); reported: medians and the median of per-round ratios.

Evidently is pinned (EVIDENTLY_PACKAGES) and installed into its own virtualenv under
.venv-bench/ (gitignored, kept between runs; never a shipml dependency).

    .venv/bin/python benchmarks/drift.py [--rounds 3] [--rows 1000000] [--no-evidently]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Evidently 0.7 imports a pandas internal that pandas 3 removed: pandas 2 in its venv.
EVIDENTLY_PACKAGES = ("evidently==0.7.23", "pandas>=2.2,<3", "pyarrow")
EVIDENTLY_VENV = HERE.parent / ".venv-bench" / "evidently"


def make_data(folder: Path, rows: int) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)

    def frame(n: int, drift: bool) -> pd.DataFrame:
        cols = {}
        for i in range(15):
            shift = 0.5 if drift and i < 3 else 0.0
            cols[f"num{i}"] = rng.normal(i + shift, 1 + i / 10, n).astype("float64")
        for i in range(5):
            p = [0.5, 0.3, 0.15, 0.05]
            if drift and i == 0:
                p = [0.3, 0.3, 0.25, 0.15]
            cols[f"cat{i}"] = rng.choice(["a", "b", "c", "d"], n, p=p)
        return pd.DataFrame(cols)

    reference, current = folder / "reference.parquet", folder / "current.parquet"
    frame(100_000, False).to_parquet(reference, row_group_size=100_000)
    frame(rows, True).to_parquet(current, row_group_size=100_000)
    return reference, current


SHIPML = """
import json, resource, sys, time
t = time.perf_counter()
import pyarrow.parquet as pq
import pandas as pd
from shipml.data import stattests
from shipml.data.drift import Reference, Window, compare
from shipml.data.profile import table_profile
stattests.warm_up()  # scipy's modules, imported once per process
reference = Reference.from_profile(table_profile(pd.read_parquet(sys.argv[1])))
start, cpu = time.perf_counter(), time.process_time()
window = Window(reference)
# pre_buffer=False: one row group's pages at a time (the default reads ahead, ~200 MB)
current = pq.ParquetFile(sys.argv[2], pre_buffer=False)
for batch in current.iter_batches(batch_size=65_536, use_threads=False):
    window.add({name: batch.column(name) for name in batch.schema.names})
result = compare(window)
end = time.perf_counter()
print(json.dumps({"seconds": end - start, "cpu": time.process_time() - cpu, "total": end - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "drifted": result.drifted}))
"""

EVIDENTLY = """
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
t = time.perf_counter()
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
reference = pd.read_parquet(sys.argv[1])
start, cpu = time.perf_counter(), time.process_time()
current = pd.read_parquet(sys.argv[2])
snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
data = snapshot.dict()
end = time.perf_counter()
drifted = [m["config"].get("column") for m in data["metrics"]
           if isinstance(m.get("value"), (int, float)) and m["config"].get("column")
           and m["config"].get("threshold") is not None and (
               m["value"] < m["config"]["threshold"] if m["config"].get("method", "").endswith("p_value")
               else m["value"] >= m["config"]["threshold"])]
print(json.dumps({"seconds": end - start, "cpu": time.process_time() - cpu, "total": end - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "drifted": sorted(set(drifted))}))
"""


def evidently_python() -> Path:
    """The benchmark's own virtualenv with the pinned Evidently (made once, kept)."""
    python = EVIDENTLY_VENV / "bin" / "python"
    ready = EVIDENTLY_VENV / ".installed"
    if not ready.exists() or ready.read_text() != " ".join(EVIDENTLY_PACKAGES):
        print(f"installing {' '.join(EVIDENTLY_PACKAGES)} into {EVIDENTLY_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY_PACKAGES], check=True)
        ready.write_text(" ".join(EVIDENTLY_PACKAGES))
    return python


def run(python: Path | str, code: str, reference: Path, current: Path) -> dict:
    out = subprocess.run(
        [str(python), "-c", code, str(reference), str(current)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"{python} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-evidently", action="store_true")
    args = parser.parse_args()
    other = None if args.no_evidently else evidently_python()
    with tempfile.TemporaryDirectory() as tmp:
        reference, current = make_data(Path(tmp), args.rows)
        ours, theirs, ratios, cpu_ratios = [], [], [], []
        for r in range(args.rounds):
            a = run(sys.executable, SHIPML, reference, current)
            ours.append(a)
            line = f"round {r + 1}: shipml {a['seconds']:.2f} s (cpu {a['cpu']:.2f} s)"
            if other is not None:
                b = run(other, EVIDENTLY, reference, current)
                theirs.append(b)
                ratios.append(b["seconds"] / a["seconds"])
                cpu_ratios.append(b["cpu"] / a["cpu"])
                line += f", evidently {b['seconds']:.2f} s (cpu {b['cpu']:.2f} s)"
            print(line, flush=True)
    print(
        f"\ncurrent window {args.rows:,} rows x 20 columns, reference 100,000 rows, "
        f"{args.rounds} rounds (medians)"
    )
    for name, rows in (("shipml", ours), ("evidently", theirs)):
        if rows:
            print(
                f"{name:<10} drift {_median(rows, 'seconds'):6.2f} s  cpu {_median(rows, 'cpu'):6.2f} s"
                f"  process {_median(rows, 'total'):6.2f} s  peak RSS {_median(rows, 'rss_mb'):6.0f} MB"
                f"  drifted {rows[0]['drifted']}"
            )
    if ratios:
        print(
            f"evidently/shipml: wall time {statistics.median(ratios):.1f}x, "
            f"cpu time {statistics.median(cpu_ratios):.1f}x (median of per-round ratios)"
        )


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


if __name__ == "__main__":
    main()
