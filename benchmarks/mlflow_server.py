"""CPU of `shipml ui`'s MLflow server over its first seconds, with MLflow's job runner
(huey consumers for GenAI jobs) on and off, rounds alternated.

shipml starts MLflow servers with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false unless the
environment sets it (tracking/server.py); "on" here sets it to true. The CPU is that of
the whole process tree (the command, MLflow's server, its workers and job processes),
read from /proc after ``--seconds`` of an idle server, then the tree is stopped.

    .venv/bin/python benchmarks/mlflow_server.py --rounds 2 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tree_cpu(root: int) -> tuple[float, int]:
    """CPU seconds (with reaped children) of ``root`` and its descendants, and how many."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[tuple[int, float]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
        children.setdefault(int(fields[1]), []).append((int(entry.name), cpu))
    own = next(
        (c for ppid in children for pid, c in children[ppid] if pid == root),
        0.0,
    )
    total, count, todo = own, 1, [root]
    while todo:
        for pid, cpu in children.get(todo.pop(), []):
            total, count = total + cpu, count + 1
            todo.append(pid)
    return total, count


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one(project: Path, jobs: bool, seconds: float) -> tuple[float, int]:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if jobs else "false"}
    cmd = [sys.executable, "-m", "shipml", "ui", "--port", str(free_port())]
    proc = subprocess.Popen(
        cmd,
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(seconds)
        return tree_cpu(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    from shipml.templates import create_project

    with tempfile.TemporaryDirectory() as tmp:
        project = create_project(Path(tmp) / "bench", "bench")
        figures: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for jobs in (True, False):
                cpu, count = one(project, jobs, args.seconds)
                figures[jobs].append(cpu)
                state = "on " if jobs else "off"
                print(f"round {r + 1} job runner {state}: {cpu:5.1f} s CPU, {count} processes")
        on, off = (statistics.median(figures[k]) for k in (True, False))
        print(f"median CPU in {args.seconds:g} s: on {on:.1f} s, off {off:.1f} s ({on / off:.1f}×)")


if __name__ == "__main__":
    main()
