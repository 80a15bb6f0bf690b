"""Pipeline cache: wall time of `shipml run` on a fresh template project, then again fully
cached, then after editing a helper module imported only by the train step.

Each run is the real command in its own process. Two clocks are reported: the whole
process (Python start, imports, the run) and the run itself as `shipml run` prints it
("finished in ..."; from loading the pipeline to closing the MLflow run, MLflow's import
included). Target: cached/first under 0.25.

    .venv/bin/python benchmarks/pipeline_cache.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHIPML = [sys.executable, "-m", "shipml"]


def timed(args: list[str], cwd: Path) -> tuple[float, float]:
    """(process seconds, run seconds as printed by `shipml run`)."""
    start = time.perf_counter()
    result = subprocess.run([*SHIPML, *args], cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"`shipml {' '.join(args)}` failed:\n{result.stderr}")
    found = re.search(r"finished in ([0-9.]+)s", result.stdout)
    return took, float(found.group(1)) if found else float("nan")


def once(base: Path, i: int) -> tuple[tuple[float, float], ...]:
    folder = base / f"bench-{i}"
    subprocess.run(
        [*SHIPML, "init", folder.name, "--dir", str(folder)], check=True, capture_output=True
    )
    first = timed(["run"], folder)
    cached = timed(["run"], folder)
    features = folder / "features.py"
    features.write_text(features.read_text().replace("[3, 6, None]", "[3, 6, 12]"))
    helper = timed(["run"], folder)
    return first, cached, helper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [once(Path(tmp), i) for i in range(args.repeat)]
    labels = [
        "first run (all 6 steps execute)",
        "second run (all cached)",
        "after editing features.py",
    ]
    medians = []
    print(f"{'median of ' + str(args.repeat):<34}{'process s':>10}{'run s':>10}")
    for label, col in zip(labels, zip(*runs, strict=True), strict=True):
        proc = statistics.median(c[0] for c in col)
        inner = statistics.median(c[1] for c in col)
        medians.append((proc, inner))
        print(f"{label:<34}{proc:>10.2f}{inner:>10.2f}")
    (fp, fr), (cp, cr), (hp, hr) = medians
    print(f"cached / first: process {cp / fp:.3f}, run {cr / fr:.3f}   (target < 0.25)")
    print(f"helper edit / first: process {hp / fp:.3f}, run {hr / fr:.3f}")


if __name__ == "__main__":
    main()
