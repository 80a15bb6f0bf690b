"""Serving under hostile conditions, measured side by side (issue 13).

1. Throughput with the connection guards on: `shipml serve` unaudited (a package folder
   outside a project), `shipml serve` audited (inside a project: the default), and the
   bare ASGI + onnxruntime endpoint, all running at once and loaded in turn with
   `wrk -t1 -c4` (single rows), A B C A B C... over rounds; the median of per-round
   ratios to the bare endpoint.
2. Health checks while big requests are scored: a client sends 10 MB `/predict`
   bodies back to back while another polls `/v2/health/ready`; the health checks'
   latencies (max, p99), against the same polling with no big request.
3. A 200 MB body to each endpoint: the status and the server's RSS growth.

    .venv/bin/python benchmarks/serving/hostile.py [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from run import BIN, free_port, rss_mb, servers, train, wait_ready, wrk  # noqa: E402

from tests.serving.hostile import send_big_body, status_of  # noqa: E402


def start(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def throughput(procs: dict[str, str], body: Path, rounds: int, seconds: int) -> None:
    ratios: dict[str, list[float]] = {name: [] for name in procs if name != "baseline"}
    rps: dict[str, list[float]] = {name: [] for name in procs}
    for _ in range(rounds):
        got = {name: wrk(url, body, 4, seconds)[0] for name, url in procs.items()}
        for name, value in got.items():
            rps[name].append(value)
        for name in ratios:
            ratios[name].append(got[name] / got["baseline"])
    print(f"\nthroughput, wrk -t1 -c4, single rows, {rounds} rounds x {seconds} s, interleaved")
    for name, values in rps.items():
        print(f"  {name:<16} median {statistics.median(values):>8.0f} req/s")
    for name, values in ratios.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name}/baseline: median of per-round ratios {statistics.median(values):.2f}x")
        print(f"    per round: {shown}")


def health_while_big(url: str, name: str, rows: int, seconds: float) -> None:
    data = [[0.5] * 30 for _ in range(rows)]
    big = json.dumps(
        {"inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32", "data": data}]}
    ).encode()

    def poll(stop: threading.Event) -> list[float]:
        times = []
        while not stop.is_set():
            started = time.perf_counter()
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=10) as r:
                r.read()
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)
        return times

    def run(with_big: bool) -> list[float]:
        stop = threading.Event()
        out: list[float] = []
        poller = threading.Thread(target=lambda: out.extend(poll(stop)))
        poller.start()
        deadline = time.monotonic() + seconds
        sent = 0
        while time.monotonic() < deadline:
            if with_big:
                req = urllib.request.Request(
                    f"{url}/v2/models/{name}/infer",
                    data=big,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=60) as r:
                    assert r.status == 200
                sent += 1
            else:
                time.sleep(0.05)
        stop.set()
        poller.join()
        return out

    quiet, busy = run(False), run(True)
    q99, b99 = (statistics.quantiles(t, n=100)[98] for t in (quiet, busy))
    print(f"\nhealth checks while {len(big) / 1e6:.1f} MB requests are scored back to back:")
    print(f"  without big requests: {len(quiet)} checks, p99 {q99:.1f} ms, max {max(quiet):.1f}")
    print(f"  with big requests:    {len(busy)} checks, p99 {b99:.1f} ms, max {max(busy):.1f}")


def big_bodies(url: str, proc: subprocess.Popen[bytes], name: str) -> None:
    print("\n200 MB bodies (Content-Length, then chunked):")
    for path in ("/predict", "/invocations", f"/v2/models/{name}/infer"):
        for chunked in (False, True):
            before = rss_mb(proc)
            answer = send_big_body(url, path, 200 * 1024 * 1024, chunked=chunked)
            growth = rss_mb(proc) - before
            kind = "chunked" if chunked else "length"
            print(f"  {path:<32} {kind:<8} -> {status_of(answer)}, RSS +{growth:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--parts", default="throughput,health,big")
    parser.add_argument(
        "--compare",
        default="",
        help="another shipml executable (e.g. main's checkout) served side by side",
    )
    args = parser.parse_args()
    parts = args.parts.split(",")
    from shipml.templates import create_project

    workdir = Path(tempfile.mkdtemp(prefix="shipml-hostile-"))
    model = train(workdir)["rf"]
    project = create_project(workdir / "project", "bench")
    specs = servers(model, 0)
    procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        chosen = [
            ("shipml", specs["shipml"]),
            ("shipml-audited", specs["shipml"]),
            ("baseline", specs["baseline"]),
        ]
        if args.compare:
            chosen.insert(1, ("shipml-compared", specs["shipml"]))
        for name, (cmd, path, env) in chosen:
            port = free_port()
            cmd = [str(port) if c == "0" else c for c in cmd]
            if name == "shipml-compared":
                cmd = [args.compare, *cmd[1:]]
            cwd = project if name == "shipml-audited" else HERE
            proc = start(cmd, cwd, env)
            url = f"http://127.0.0.1:{port}{path}"
            if not wait_ready(url, (workdir / "v2.json").read_bytes()):
                raise SystemExit(f"{name} did not answer")
            wrk(url, workdir / "v2.json", 4, 1)  # warm-up
            procs[name] = (proc, url)
        urls = {n: u for n, (_, u) in procs.items()}
        if "throughput" in parts:
            throughput(urls, workdir / "v2.json", args.rounds, args.seconds)
        proc, url = procs["shipml"]
        base = url.split("/v2/")[0]
        name = model["package"].name
        if "health" in parts:
            health_while_big(base, name, rows=65_000, seconds=10)
            if args.compare:
                print("  (the same, served by --compare:)")
                health_while_big(urls["shipml-compared"].split("/v2/")[0], name, 65_000, 10)
        if "big" in parts:
            big_bodies(base, proc, name)
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=20)
    print(f"\n(shipml {BIN})")


if __name__ == "__main__":
    main()
