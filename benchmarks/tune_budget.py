"""The anytime contract's budget, measured: `shipml tune --budget 60s` on a fresh template
project. Reports the wall time of the search (budget counted from the command's start),
the wrap-up (training the best trial again, registering, testing) and the trials logged.

    .venv/bin/python benchmarks/tune_budget.py [--budget 60] [--rounds 1]

The search must end within -5% / +10% of the budget (57-66 s for 60 s), plus one wrap-up.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_round(budget: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        subprocess.run(
            [sys.executable, "-m", "shipml", "init", "bench", "--dir", str(root)],
            check=True,
            capture_output=True,
        )
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "shipml", "tune", "--budget", f"{budget:g}s"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.monotonic() - started
        if out.returncode != 0:
            raise SystemExit(f"shipml tune failed ({out.returncode}):\n{out.stderr[-3000:]}")
        text = out.stdout.replace("\n", " ")
        search = float(re.search(r"trial\(s\) in ([0-9.]+)s", text).group(1))
        trials = int(re.search(r"search bench: (\d+) trial", text).group(1))
        wrap = float(re.search(r"wrap-up ([0-9.]+)s", text).group(1))
        return {"wall": wall, "search": search, "wrap_up": wrap, "trials": trials}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rounds = [one_round(args.budget) for _ in range(args.rounds)]
    searches = [r["search"] for r in rounds]
    print(
        json.dumps(
            {
                "budget": args.budget,
                "rounds": rounds,
                "median_search": statistics.median(searches),
                "within": all(0.95 * args.budget <= s <= 1.10 * args.budget for s in searches),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
