"""Resident memory of `shipml serve` on the template's model in a project (audit log on),
this checkout against another one (``--before``), interleaved over rounds.

Makes a project from the template and runs its pipeline (champion: penguins/1), then in
each round starts `shipml serve penguins@champion` with this tree's code and with the
code of ``--before`` (``PYTHONPATH=BEFORE/src``, the same virtualenv), the order
alternating; each server answers 200 V2 requests (one row each) and its RSS (VmRSS of the
process and of any children, from /proc) is read after them. Reports the medians and the
median of per-round ratios.

    git worktree add /tmp/shipml-before integ
    .venv/bin/python benchmarks/serve_rss.py --before /tmp/shipml-before [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
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


def measure(cwd: Path, body: bytes, pythonpath: str | None) -> float:
    port = free_port()
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
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
        return rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="Checkout to compare with.")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder, _package, instances = project()
    body = v2_body(instances)
    kinds = {"before": str(args.before.resolve() / "src"), "after": None}
    rss: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in list(kinds) if r % 2 == 0 else list(reversed(kinds)):
            rss[kind].append(measure(folder, body, kinds[kind]))
    print(f"RSS of `shipml serve penguins@champion` after {REQUESTS} V2 requests (MiB)")
    for kind, values in rss.items():
        shown = " ".join(f"{v:.0f}" for v in values)
        print(f"{kind:<8}{statistics.median(values):>7.1f} MiB   ({shown})")
    ratios = [a / b for a, b in zip(rss["after"], rss["before"], strict=True)]
    print(f"after / before: {statistics.median(ratios):.2f} (median of per-round ratios)")
    print("target: ≤ 150 MiB")


if __name__ == "__main__":
    main()
