"""LightGBM serving benchmark: a 500-tree LightGBM model served three ways, same run.

- shipml: `shipml serve PACKAGE` (the model packaged as ONNX by shipml; validation,
  metrics and batching on, as by default);
- onnx: a bare ASGI + onnxruntime endpoint on the same ONNX graph (baseline_app.py);
- lightgbm: LightGBM's own `Booster.predict` in the same bare ASGI endpoint
  (lightgbm_app.py).

All three run at once (one uvicorn worker each, one thread for the model); each round
loads each server in turn with wrk (single-row V2 requests, `-t1 -cN`), the order
rotated every round (A B C, B C A, ...), so a machine that gets busier or quieter
weighs on all three alike. Reported: the median over rounds of requests/s and p99, and
the median of the per-round ratios shipml/onnx and shipml/lightgbm. Needs wrk and the
lightgbm extra.

    .venv/bin/python benchmarks/serving/boosted.py [--rounds 5] [--duration 5] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from run import free_port, rss_mb, wait_ready, wrk

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SERVERS = ("shipml", "onnx", "lightgbm")


def train(workdir: Path, trees: int) -> tuple[Path, Path, Path]:
    """The package (ONNX), LightGBM's own model file, and a V2 body of one row."""
    import json

    import pandas as pd
    from lightgbm import LGBMClassifier
    from sklearn.datasets import make_classification

    from shipml.model import build_package, model_input

    # Enough rows that every one of the trees keeps splitting (31 leaves each): on a
    # small table most of 500 trees would be single leaves and cost nothing.
    features, labels = make_classification(
        n_samples=20_000, n_features=30, n_informative=15, flip_y=0.05, random_state=0
    )
    X = pd.DataFrame(features, columns=[f"f{i}" for i in range(30)])
    y = pd.Series(labels, name="label")
    X32 = model_input(X)
    model = LGBMClassifier(n_estimators=trees, random_state=0, n_jobs=1, verbose=-1)
    model.fit(X32, y)
    leaves = model.booster_.dump_model()["tree_info"]
    print(
        f"{len(leaves)} trees, {sum(t['num_leaves'] for t in leaves) / len(leaves):.1f} leaves each"
    )
    package = build_package(model, X.head(2000), y.head(2000), path=workdir / "lgbm")
    assert package.format == "onnx", package.format
    print(f"parity: {package.manifest['parity']}")
    native = workdir / "model.txt"
    model.booster_.save_model(str(native))
    row = X32.iloc[0].astype(float).tolist()
    body = workdir / "v2.json"
    body.write_text(
        json.dumps(
            {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
        )
    )
    return package.path, native, body


def start(package: Path, native: Path) -> dict[str, tuple[subprocess.Popen[bytes], str]]:
    env = {
        **os.environ,
        "BASELINE_ONNX": str(package / "model.onnx"),
        "LIGHTGBM_MODEL": str(native),
    }
    uvicorn = [
        str(BIN / "uvicorn"),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
    ]
    commands = {
        "shipml": [str(BIN / "shipml"), "serve", str(package), "--port"],
        "onnx": [*uvicorn, "baseline_app:app", "--port"],
        "lightgbm": [*uvicorn, "lightgbm_app:app", "--port"],
    }
    paths = {"shipml": f"/v2/models/{package.name}/infer", "onnx": "/", "lightgbm": "/"}
    running = {}
    for name, cmd in commands.items():
        port = free_port()
        proc = subprocess.Popen(
            [*cmd, str(port)],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        running[name] = (proc, f"http://127.0.0.1:{port}{paths[name]}")
    return running


def in_process(package: Path, native: Path, body: Path, rounds: int, n: int = 500) -> None:
    """Each ASGI app driven by asyncio in this process, no network: the cost of one
    request's handling (rounds interleaved, median microseconds)."""
    import asyncio
    import time

    os.environ.update(BASELINE_ONNX=str(package / "model.onnx"), LIGHTGBM_MODEL=str(native))
    import baseline_app
    import lightgbm_app

    from shipml.project.serving import serve_spec
    from shipml.serving.server import build_app

    shipml_app = build_app(serve_spec(None, str(package)))  # a package folder, as served
    shipml_app.warm_up()
    apps = {
        "shipml": (shipml_app, f"/v2/models/{package.name}/infer"),
        "onnx": (baseline_app.app, "/"),
        "lightgbm": (lightgbm_app.app, "/"),
    }
    raw = body.read_bytes()

    async def drive(app: object, path: str) -> None:
        scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        for _ in range(n):
            sent: list[dict] = []

            async def receive() -> dict:
                return {"type": "http.request", "body": raw, "more_body": False}

            async def send(message: dict, sent: list = sent) -> None:
                sent.append(message)

            await app(scope, receive, send)  # type: ignore[operator]
            assert sent[0]["status"] == 200, sent

    times: dict[str, list[float]] = {name: [] for name in apps}
    for r in range(rounds):
        for name in SERVERS[r % 3 :] + SERVERS[: r % 3]:
            app, path = apps[name]
            started = time.perf_counter()
            asyncio.run(drive(app, path))
            times[name].append((time.perf_counter() - started) / n * 1e6)
    print(f"\nin process (no network): microseconds per request, median of {rounds} rounds of {n}")
    for name in SERVERS:
        print(f"{name:<10}{statistics.median(times[name]):>10.1f}")
    for other in ("onnx", "lightgbm"):
        ratios = [o / s for s, o in zip(times["shipml"], times[other], strict=True)]
        print(f"shipml/{other} (throughput): median {statistics.median(ratios):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per server")
    parser.add_argument("--connections", default="4,32")
    parser.add_argument("--trees", type=int, default=500)
    parser.add_argument(
        "--in-process", action="store_true", help="also time each app's handling in process"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="shipml-bench-lgbm-"))
    package, native, body = train(workdir, args.trees)
    if args.in_process:
        in_process(package, native, body, rounds=max(args.rounds, 9))
    running = start(package, native)
    try:
        for name, (_, url) in running.items():
            if not wait_ready(url, body.read_bytes()):
                raise SystemExit(f"{name} did not answer at {url}")
            wrk(url, body, 4, 2)  # warm-up
        for conns in (int(c) for c in args.connections.split(",")):
            report(running, body, conns, args)
        print("RSS MB: " + ", ".join(f"{n} {rss_mb(p):.0f}" for n, (p, _) in running.items()))
    finally:
        for proc, _ in running.values():
            proc.terminate()
        for proc, _ in running.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def report(running: dict, body: Path, conns: int, args: argparse.Namespace) -> None:
    rounds: list[dict[str, tuple[float, float, float]]] = []
    for r in range(args.rounds):
        order = SERVERS[r % 3 :] + SERVERS[: r % 3]
        rounds.append({name: wrk(running[name][1], body, conns, args.duration) for name in order})
    print(
        f"\nLightGBM, {args.trees} trees, 30 features, single-row V2 requests, "
        f"wrk -t1 -c{conns}, {args.rounds} interleaved rounds of {args.duration}s"
    )
    print(f"{'server':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}   (medians over rounds)")
    for name in SERVERS:
        rps, p50, p99 = (statistics.median(r[name][i] for r in rounds) for i in range(3))
        print(f"{name:<10}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}")
    for other in ("onnx", "lightgbm"):
        ratios = [r["shipml"][0] / r[other][0] for r in rounds]
        shown = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"shipml/{other}: median {statistics.median(ratios):.2f}x (rounds: {shown})")


if __name__ == "__main__":
    main()
