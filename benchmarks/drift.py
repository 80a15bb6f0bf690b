"""Drift benchmark: shipml's streaming drift (shipml.data.drift) against Evidently's
DataDriftPreset, on the same data: a reference of 100,000 rows and a current window of
1,000,000 rows × 20 columns (15 numeric, 5 categorical; 4 columns drifted).

shipml reads the current window from Parquet in batches and counts it against the
reference profile (never holding the window); Evidently gets both as DataFrames (as its
API takes them). Each side runs in its own process — wall time and peak RSS — in
alternation over rounds (A B A B ...); reported: medians and the median of per-round
ratios. Evidently is installed into its own virtualenv (never a shipml dependency).

    .venv/bin/python benchmarks/drift.py [--rounds 3] [--rows 1000000] [--no-evidently]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = Path(tempfile.gettempdir()) / "shipml-bench-evidently"


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
from shipml.data.drift import Reference, Window, compare
from shipml.data.profile import table_profile
reference = Reference.from_profile(table_profile(pd.read_parquet(sys.argv[1])))
start = time.perf_counter()
window = Window(reference)
for batch in pq.ParquetFile(sys.argv[2]).iter_batches(batch_size=100_000):
    window.add({name: batch.column(name).to_numpy(zero_copy_only=False) for name in batch.schema.names})
result = compare(window)
end = time.perf_counter()
print(json.dumps({"seconds": end - start, "total": end - t, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "drifted": result.drifted}))
"""

EVIDENTLY = """
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
t = time.perf_counter()
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
reference, current = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
start = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
data = snapshot.dict()
end = time.perf_counter()
drifted = [m["config"].get("column") for m in data["metrics"]
           if isinstance(m.get("value"), (int, float)) and m["config"].get("column")
           and m["config"].get("threshold") is not None and (
               m["value"] < m["config"]["threshold"] if m["config"].get("method", "").endswith("p_value")
               else m["value"] >= m["config"]["threshold"])]
print(json.dumps({"seconds": end - start, "total": end - t, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "drifted": sorted(set(drifted))}))
"""


def evidently_python() -> Path:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "evidently", "pyarrow"], check=True
        )
    return python


def run(python: Path | str, code: str, reference: Path, current: Path) -> dict:
    out = subprocess.run(
        [str(python), "-c", code, str(reference), str(current)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-evidently", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reference, current = make_data(Path(tmp), args.rows)
        other = None if args.no_evidently else evidently_python()
        ours, theirs, ratios = [], [], []
        for _ in range(args.rounds):
            a = run(sys.executable, SHIPML, reference, current)
            ours.append(a)
            if other is not None:
                b = run(other, EVIDENTLY, reference, current)
                theirs.append(b)
                ratios.append(b["seconds"] / a["seconds"])
        med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
        print(
            f"current window {args.rows:,} rows x 20 columns, reference 100,000 rows, {args.rounds} rounds"
        )
        print(
            f"shipml     drift {med(ours, 'seconds'):6.2f} s  process {med(ours, 'total'):6.2f} s  "
            f"peak RSS {med(ours, 'rss_mb'):6.0f} MB  drifted {ours[0]['drifted']}"
        )
        if theirs:
            print(
                f"evidently  drift {med(theirs, 'seconds'):6.2f} s  process {med(theirs, 'total'):6.2f} s  "
                f"peak RSS {med(theirs, 'rss_mb'):6.0f} MB  drifted {theirs[0]['drifted']}"
            )
            print(
                f"evidently/shipml time: {statistics.median(ratios):.1f}x (median of per-round ratios)"
            )


if __name__ == "__main__":
    time.sleep(0)
    main()
