"""What auditing costs, as users run it: `shipml serve NAME@champion` inside a project
(the audit log on, as by default) against the same server with the log off, the same
model served as a package folder outside a project (no audit log), and the bare ONNX
endpoint.

All four servers run at once, idle between turns; each round loads them in turn with
`wrk -t1 -c4` (single-row V2 requests), so a busy moment of the machine hits every
server alike, and the ratios are the median of the per-round ratios. The log's size
after the servers stop, over its records, gives the bytes stored per prediction.

    .venv/bin/python benchmarks/serving/audited.py [--duration 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import BIN, free_port, train, wait_ready  # noqa: E402


def register(project: Path, package: Path, name: str) -> None:
    """The package as version 1 of ``name`` in the project's registry, alias champion
    (moved through the one promotion function; the benchmark model has no test report)."""
    from shipml.config import load_config
    from shipml.model import ModelPackage
    from shipml.project.promotion import promote
    from shipml.tracking import Registry, tracker_for

    config = load_config(project)
    tracker = tracker_for(config)
    run_id = tracker.start_run("benchmark", {})
    tracker.log_artifacts(run_id, package, "model")
    tracker.end_run(run_id, "FINISHED")
    registry = Registry(tracker)
    pkg = ModelPackage.load(package)
    info, _ = registry.register(
        name,
        run_id=run_id,
        source=f"{tracker.artifact_uri(run_id)}/model",
        content_digest=pkg.model_digest,
        tags={},
    )
    promote(config, f"{name}/{info.version}", force=True, reason="benchmark")


def requests_done(url: str, body: Path, seconds: int) -> tuple[float, int]:
    """wrk -c4: requests/s and the number of requests answered."""
    script = body.with_suffix(".lua")
    out = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from {url}:\n{out}")
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, count


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) a server process and the processes it
    started (its audit writer, its span exporter) have used: its cost per request does
    not depend on how busy the machine is, as throughput does."""
    import psutil

    server = psutil.Process(pid)  # `env` and the scripts exec: one process
    total = 0.0
    for process in [server, *server.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipml-audit-bench-"))
    paths = train(work)["lr"]
    project = work / "project"
    project.mkdir()
    (project / "shipml.toml").write_text('[project]\nname = "bench"\n')
    register(project, paths["package"], "cancer")
    body = work / "v2.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    env["BASELINE_ONNX"] = str(paths["package"] / "model.onnx")
    servers = {
        "audited": ([str(BIN / "shipml"), "serve", "cancer@champion"], project, "cancer"),
        "project, audit off": (
            ["env", "SHIPML_AUDIT_ENABLED=false", str(BIN / "shipml"), "serve", "cancer@champion"],
            project,
            "cancer",
        ),
        "unaudited": (
            [str(BIN / "shipml"), "serve", str(paths["package"])],
            work,
            paths["package"].name,
        ),
        "baseline": (
            [
                str(BIN / "uvicorn"),
                "baseline_app:app",
                *("--loop", "uvloop", "--http", "httptools", "--log-level", "warning"),
            ],
            HERE,
            "x",
        ),
    }
    procs, urls, cold = {}, {}, {}
    try:
        for name, (cmd, cwd, model) in servers.items():
            port = free_port()
            started = time.perf_counter()
            procs[name] = subprocess.Popen(
                [*cmd, "--port", str(port)],
                cwd=cwd,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            urls[name] = f"http://127.0.0.1:{port}/v2/models/{model}/infer"
            if not wait_ready(urls[name], body.read_bytes()):
                raise SystemExit(f"{name} did not answer at {urls[name]}")
            cold[name] = time.perf_counter() - started
        body.with_suffix(".lua").write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body}"); wrk.body = f:read("*a"); f:close()\n'
        )
        for url in urls.values():
            requests_done(url, body, 2)  # warm-up
        log = project / ".shipml" / "audit"
        answered = 0
        rps: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name, url in urls.items():  # interleaved: A B C A B C ...
                used = server_cpu(procs[name].pid)
                rate, count = requests_done(url, body, args.duration)
                rps[name].append(rate)
                cpu[name].append((server_cpu(procs[name].pid) - used) / count * 1e6)
                answered += count if name == "audited" else 0
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    stored = sum(f.stat().st_size for f in log.glob("audit.db*"))  # stopped: WAL copied in
    with sqlite3.connect(log / "audit.db") as db:
        (records,) = db.execute("SELECT COUNT(*) FROM entries").fetchone()
    ratio = {
        name: statistics.median(a / b for a, b in zip(rps[name], rps["baseline"], strict=True))
        for name in servers
        if name != "baseline"
    }
    print(
        f"wrk -t1 -c4, single-row V2 requests, {args.rounds} interleaved rounds x "
        f"{args.duration}s (median)"
    )
    for name in servers:
        print(
            f"{name:<20}{statistics.median(rps[name]):>8.0f} req/s   cold {cold[name]:.2f} s   "
            f"server CPU {statistics.median(cpu[name]):.0f} us/request"
        )
    for name, value in ratio.items():
        print(f"{name + ' / baseline:':<32}{value:.2f}x (median of per-round ratios)")
    print(
        f"audit log: {stored / records:.0f} bytes per prediction ({records:,} records, "
        f"{answered:,} of them in the timed rounds)"
    )
    print(json.dumps({"ratios": ratio}))


if __name__ == "__main__":
    main()
