"""Gateway cost and shadow isolation, measured side by side, interleaved over rounds.

1. Throughput and p99 of `shipml serve` called directly vs through `shipml gateway`
   (single mode) with the champion hosted in the gateway process, and with the
   champion as a remote `shipml serve` (one more HTTP hop). All three run at once; each
   round loads them one after the other (the order rotates from round to round), and a
   gateway's cost is the median over rounds of its per-round ratio to the direct server:
   a busy machine slows a whole round, not one configuration. Each run also counts
   the CPU time the serving processes spent per request (the gateway and, behind a
   remote one, the server): on a shared machine that is the steadier figure, and for a
   process that is CPU-bound on one core its inverse is the throughput it can reach.
2. Shadow at 100% with the champion in process and the shadow a remote server: the
   champion's p99 with the shadow alive, then killed (SIGKILL), in every round (the
   shadow is started again for the next round).

Model: the breast-cancer LogisticRegression pipeline; wrk -t1 -c4, single-row V2
requests. Audit off (the servers run outside a project).

    .venv/bin/python benchmarks/gateway.py [--duration 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent / "serving"))
from run import free_port, wait_ready, wrk

BIN = Path(sys.executable).parent
PATH = "/v2/models/cancer/infer"
Runs = dict[str, list[tuple[float, float, float, float]]]


def start(cmd: list[str], port: int, body: bytes) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tempfile.gettempdir(),
    )
    if not wait_ready(f"http://127.0.0.1:{port}{PATH}", body):
        proc.kill()
        raise SystemExit(f"{cmd[1]} did not answer on port {port}")
    return proc


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for proc in procs:
        times = psutil.Process(proc.pid).cpu_times()
        total += times.user + times.system
    return total


def measured(
    url: str, body: Path, seconds: int, procs: list[subprocess.Popen[bytes]]
) -> tuple[float, float, float, float]:
    """(req/s, p50 ms, p99 ms, CPU µs per request of ``procs``) of one wrk run."""
    before = cpu_seconds(procs)
    rps, p50, p99 = wrk(url, body, 4, seconds)
    spent = cpu_seconds(procs) - before
    return rps, p50, p99, spent / max(rps * seconds, 1.0) * 1e6


def package(work: Path) -> tuple[Path, Path]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from shipml.model import build_package, model_input

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    pkg = build_package(model.fit(model_input(X), y), X, y, path=work / "cancer").path
    row = X.iloc[0].astype(float).tolist()
    body = work / "v2.json"
    tensor = {"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row}
    body.write_text(json.dumps({"inputs": [tensor]}))
    return pkg, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipml-gw-bench-"))
    pkg, body = package(work)
    raw = body.read_bytes()
    serve = [str(BIN / "shipml"), "serve", str(pkg)]
    gateway = [str(BIN / "shipml"), "gateway"]
    ports = {name: free_port() for name in ("direct", "in process", "remote", "shadow", "sh-gw")}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    procs = {"direct": start(serve, ports["direct"], raw)}
    procs["in process"] = start([*gateway, "--champion", f"cancer={pkg}"], ports["in process"], raw)
    remote = [*gateway, "--champion", f"cancer={url['direct']}"]
    procs["remote"] = start(remote, ports["remote"], raw)
    procs["shadow"] = start(serve, ports["shadow"], raw)
    mirror = [*gateway, "--mode", "shadow", "--champion", f"cancer={pkg}"]
    procs["sh-gw"] = start(
        [*mirror, "--challenger", f"shadow={url['shadow']}"], ports["sh-gw"], raw
    )
    configs = ["direct", "in process", "remote"]
    serving = {"direct": ["direct"], "in process": ["in process"], "remote": ["remote", "direct"]}
    runs: Runs = {}
    try:
        for name in [*configs, "sh-gw"]:
            wrk(url[name] + PATH, body, 4, 2)  # warm-up
        for r in range(args.rounds):
            for name in configs[r % 3 :] + configs[: r % 3]:  # A B C, B C A, C A B, ...
                who = [procs[p] for p in serving[name]]
                run = measured(url[name] + PATH, body, args.duration, who)
                runs.setdefault(name, []).append(run)
            if procs["shadow"].poll() is not None:  # killed last round: start it again
                procs["shadow"] = start(serve, ports["shadow"], raw)
            runs.setdefault("shadow alive", []).append(
                measured(url["sh-gw"] + PATH, body, args.duration, [procs["sh-gw"]])
            )
            procs["shadow"].send_signal(signal.SIGKILL)
            procs["shadow"].wait()
            time.sleep(0.5)
            runs.setdefault("shadow killed", []).append(
                measured(url["sh-gw"] + PATH, body, args.duration, [procs["sh-gw"]])
            )
            print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)
        with urllib.request.urlopen(url["sh-gw"] + "/v1/rollout") as resp:
            shadow = json.loads(resp.read())["shadow"]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    report(runs, args, shadow)


def ratio(runs: Runs, a: str, b: str, i: int) -> float:
    """Median over rounds of a's metric ``i`` divided by b's in the same round."""
    return statistics.median(x[i] / y[i] for x, y in zip(runs[a], runs[b], strict=True))


def report(runs: Runs, args: argparse.Namespace, shadow: dict[str, int]) -> None:
    print(f"wrk -t1 -c4, {args.rounds} interleaved rounds of {args.duration} s (medians)")
    print(f"{'':<28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}")
    for name, values in runs.items():
        rps, p50, p99, cpu = (statistics.median(v[i] for v in values) for i in range(4))
        print(f"{name:<28}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}{cpu:>12.0f}")
    pairs = zip(runs["in process"], runs["direct"], strict=True)
    per_round = [f"{x[0] / y[0]:.2f}" for x, y in pairs]
    print(f"in process / direct, per round: {' '.join(per_round)}")
    print(
        f"gateway cost, champion in process: {1 - ratio(runs, 'in process', 'direct', 0):.1%}"
        " of direct throughput (median of per-round ratios; target <= 15%)"
    )
    print(f"gateway cost, champion remote:     {1 - ratio(runs, 'remote', 'direct', 0):.1%}")
    print(
        "gateway cost in CPU per request (1 - direct / gateway, median of per-round ratios): "
        f"champion in process {1 - ratio(runs, 'direct', 'in process', 3):.1%}, "
        f"remote {1 - ratio(runs, 'direct', 'remote', 3):.1%}"
    )
    dead = ratio(runs, "shadow killed", "shadow alive", 2)
    print(
        f"champion p99 with the shadow killed: {dead - 1:+.1%} of its p99 with the shadow alive "
        f"(median of per-round ratios; target < +20%); shadow outcomes {shadow}"
    )


if __name__ == "__main__":
    main()
