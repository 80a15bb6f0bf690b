"""Resident memory of `shipml serve` on the template's model in a project (audit log on),
live drift on (the default) and off, and optionally the code of another checkout
(``--before``, live drift on), interleaved over rounds.

Makes a project from the template and runs its pipeline (champion: penguins/1), then in
each round starts `shipml serve penguins@champion` with this tree's code, live drift on
and off (``SHIPML_MONITOR_LIVE=false``), and with the code of ``--before``
(``PYTHONPATH=BEFORE/src``, the same virtualenv), the order rotating; each server
answers 200 V2 requests (one row each), is left 2 s (the live-drift thread has loaded
what it needs by then), and its RSS (VmRSS of the process and of any children, from
/proc) is read. Reports the medians and the median of per-round ratios.

    git worktree add /tmp/shipml-before integ
    .venv/bin/python benchmarks/serve_rss.py [--before /tmp/shipml-before] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "serving"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import free_port, wait_ready
from serve_start import BIN, project

REQUESTS = 200


def rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` and its descendants, in MiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
        )
        todo += [int(c) for c in children]
    return total / 1024


def v2_body(instances: bytes) -> bytes:
    row = json.loads(instances)["instances"][0]
    inputs = []
    for name, value in row.items():
        kind = "BYTES" if isinstance(value, str) or value is None else "FP64"
        inputs.append({"name": name, "shape": [1], "datatype": kind, "data": [value]})
    return json.dumps({"inputs": inputs}).encode()


def measure(cwd: Path, body: bytes, overrides: dict[str, str]) -> float:
    port = free_port()
    env = {**os.environ, **overrides}
    proc = subprocess.Popen(
        [str(BIN / "shipml"), "serve", "penguins@champion", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v2/models/penguins/infer"
        if not wait_ready(url, body, timeout=120):
            raise SystemExit("`shipml serve` did not answer")
        for _ in range(REQUESTS):
            request = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()
        time.sleep(2.0)
        return rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="Checkout to compare with.")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder, _package, instances = project()
    body = v2_body(instances)
    kinds: dict[str, dict[str, str]] = {
        "live on": {"SHIPML_MONITOR_LIVE": "true"},
        "live off": {"SHIPML_MONITOR_LIVE": "false"},
    }
    if args.before:
        kinds["before"] = {"PYTHONPATH": str(args.before.resolve() / "src")}
    rss: dict[str, list[float]] = {k: [] for k in kinds}
    names = list(kinds)
    for r in range(args.rounds):
        for kind in names[r % len(names) :] + names[: r % len(names)]:
            rss[kind].append(measure(folder, body, kinds[kind]))
    print(f"RSS of `shipml serve penguins@champion` after {REQUESTS} V2 requests (MiB)")
    for kind, values in rss.items():
        shown = " ".join(f"{v:.0f}" for v in values)
        print(f"{kind:<9}{statistics.median(values):>7.1f} MiB   ({shown})")
    for kind in names[1:]:
        ratios = [a / b for a, b in zip(rss["live on"], rss[kind], strict=True)]
        print(f"live on / {kind}: {statistics.median(ratios):.2f} (median of per-round ratios)")
    print("target: ≤ 150 MiB with live drift on")


if __name__ == "__main__":
    main()
