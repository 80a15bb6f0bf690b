"""The table digest of `shipml data add` on 1M rows × 20 columns (15 floats, 5 strings),
this checkout against another one (``--before``), interleaved over rounds.

Each round runs, in fresh processes and in alternating order, this tree's
``table_digest`` and the one of ``--before`` (``PYTHONPATH=BEFORE/src``) on the same
generated frame, and times the digest alone (not the read). Both must give the same
digest. Reports medians and the median of per-round ratios.

    git worktree add /tmp/shipml-before integ
    .venv/bin/python benchmarks/table_digest.py --before /tmp/shipml-before [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import time
import numpy as np
import pandas as pd
from shipml.data.digest import table_digest
rng = np.random.default_rng(0)
n = 1_000_000
floats = {f"n{i}": rng.normal(size=n) for i in range(15)}
words = np.array(["alpha", "beta", "gamma", "delta"], dtype=object)
strings = {f"c{i}": pd.Series(words[rng.integers(0, 4, n)], dtype=object) for i in range(5)}
frame = pd.DataFrame({**floats, **strings})
started = time.perf_counter()
digest = table_digest(frame)
print(time.perf_counter() - started, digest)
"""


def digest_seconds(pythonpath: str | None) -> tuple[float, str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="Checkout to compare with.")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kinds = {"before": str(args.before.resolve() / "src"), "after": None}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    digests = set()
    for r in range(args.rounds):
        for kind in list(kinds) if r % 2 == 0 else list(reversed(kinds)):
            seconds, digest = digest_seconds(kinds[kind])
            times[kind].append(seconds)
            digests.add(digest)
    if len(digests) != 1:
        raise SystemExit(f"the digests differ: {sorted(digests)}")
    print("table_digest of 1M rows x 20 columns (15 float, 5 string), seconds")
    for kind, values in times.items():
        shown = " ".join(f"{v:.2f}" for v in values)
        print(f"{kind:<8}{statistics.median(values):>6.2f} s   ({shown})")
    ratios = [a / b for a, b in zip(times["after"], times["before"], strict=True)]
    print(f"after / before: {statistics.median(ratios):.2f} (median of per-round ratios)")
    print(f"digest {digests.pop()} (the same in both)")


if __name__ == "__main__":
    main()
