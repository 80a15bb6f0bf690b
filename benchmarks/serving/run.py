"""Serving benchmark: shipml vs `mlflow models serve` vs a bare ASGI + onnxruntime app.

Trains the benchmark models on scikit-learn's breast-cancer data (a StandardScaler +
LogisticRegression pipeline, and a 100-tree RandomForest), then starts each server in
turn, warms it up, and loads it with wrk (single-row requests; -t1 -c4 and -t1 -c32;
3 repetitions, median). Prints requests/s, p50, p99, resident memory and cold start
(process start to first successful prediction), and the ratios shipml/MLflow and
shipml/baseline. Needs wrk (`apt-get install wrk`).

    .venv/bin/python benchmarks/serving/run.py [--duration 10] [--repeat 3] [--models lr,rf]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
PY = sys.executable
BIN = Path(PY).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(workdir: Path) -> dict[str, dict[str, Path]]:
    import mlflow.sklearn
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from shipml.data import table_profile
    from shipml.model import build_package, model_input

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X32 = model_input(X)
    models = {
        "lr": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "rf": RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1),
    }
    out = {}
    for key, model in models.items():
        model.fit(X32, y)
        # with its reference profile, as `shipml run` packages it: live drift is on, as by
        # default (without one, the server turns it off and the default is not measured)
        package = build_package(
            model, X, y, path=workdir / f"{key}-package", reference_profile=table_profile(X)
        )
        mlflow_dir = workdir / f"{key}-mlflow"
        mlflow.sklearn.save_model(
            model,
            str(mlflow_dir),
            input_example=X32.head(2),
            skops_trusted_types=["sklearn.tree._tree.Tree"],  # our own model, just trained
        )
        out[key] = {"package": package.path, "mlflow": mlflow_dir}
    # the same model without a reference profile: the server turns live drift off (how
    # packages were served before live drift existed; benchmarks compare with it)
    bare = build_package(models["lr"], X, y, path=workdir / "lr-package-no-profile")
    out["lr"]["no profile"] = bare.path
    row = X.iloc[0].astype(float).tolist()
    (workdir / "v2.json").write_text(
        json.dumps(
            {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
        )
    )
    (workdir / "mlflow.json").write_text(
        json.dumps({"dataframe_split": {"columns": list(X.columns), "data": [row]}})
    )
    return out


def wait_ready(url: str, body: bytes, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.02)
    return False


def rss_mb(proc: subprocess.Popen[bytes]) -> float:
    p = psutil.Process(proc.pid)
    procs = [p, *p.children(recursive=True)]
    return sum(x.memory_info().rss for x in procs if x.is_running()) / 1e6


def wrk(url: str, body_file: Path, conns: int, seconds: int) -> tuple[float, float, float]:
    script = body_file.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}"); wrk.body = f:read("*a"); f:close()\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from {url}:\n{out}")

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([0-9.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, ms("50%"), ms("99%")


def servers(paths: dict[str, Path], port: int) -> dict[str, tuple[list[str], str, dict[str, str]]]:
    env = {
        **os.environ,
        "BASELINE_ONNX": str(paths["package"] / "model.onnx"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }  # mlflow execs uvicorn
    return {
        "shipml": (
            [str(BIN / "shipml"), "serve", str(paths["package"]), "--port", str(port)],
            f"/v2/models/{paths['package'].name}/infer",
            env,
        ),
        "mlflow": (
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                str(paths["mlflow"]),
                "--env-manager",
                "local",
                "-p",
                str(port),
                "-w",
                "1",
            ],
            "/invocations",
            env,
        ),
        "baseline": (
            [
                str(BIN / "uvicorn"),
                "baseline_app:app",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            "/v2/models/x/infer",
            env,
        ),
    }


def measure(
    name: str,
    cmd: list[str],
    path: str,
    env: dict[str, str],
    port: int,
    body: Path,
    args: argparse.Namespace,
) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}{path}"
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if not wait_ready(url, body.read_bytes()):
            raise SystemExit(f"{name} did not answer at {url}")
        cold = time.perf_counter() - started
        wrk(url, body, 4, 2)  # warm-up
        result: dict[str, float] = {"cold_s": cold}
        for conns in (4, 32):
            runs = [wrk(url, body, conns, args.duration) for _ in range(args.repeat)]
            result[f"rps_c{conns}"] = statistics.median(r[0] for r in runs)
            result[f"p50_c{conns}"] = statistics.median(r[1] for r in runs)
            result[f"p99_c{conns}"] = statistics.median(r[2] for r in runs)
        result["rss_mb"] = rss_mb(proc)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="lr,rf")
    parser.add_argument("--servers", default="shipml,mlflow,baseline")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="shipml-bench-"))
    models = train(workdir)
    names = {"lr": "LogisticRegression pipeline", "rf": "RandomForest (100 trees)"}
    for key in args.models.split(","):
        results = {}
        for server, (cmd, path, env) in servers(models[key], 0).items():
            if server not in args.servers.split(","):
                continue
            port = free_port()
            cmd = [str(port) if c == "0" else c for c in cmd]
            body = workdir / ("mlflow.json" if server == "mlflow" else "v2.json")
            results[server] = measure(server, cmd, path, env, port, body, args)
        print(
            f"\n{names[key]} — single-row requests, wrk -t1, median of {args.repeat} x "
            f"{args.duration}s"
        )
        print(
            f"{'server':<10}{'c4 req/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'c32 req/s':>11}"
            f"{'p50 ms':>8}{'p99 ms':>8}{'RSS MB':>8}{'cold s':>8}"
        )
        for server, r in results.items():
            print(
                f"{server:<10}{r['rps_c4']:>10.0f}{r['p50_c4']:>8.2f}{r['p99_c4']:>8.2f}"
                f"{r['rps_c32']:>11.0f}{r['p50_c32']:>8.2f}{r['p99_c32']:>8.2f}"
                f"{r['rss_mb']:>8.0f}{r['cold_s']:>8.2f}"
            )
        ship = results.get("shipml")
        for other in ("mlflow", "baseline"):
            if ship and other in results:
                print(
                    f"shipml/{other}: c4 {ship['rps_c4'] / results[other]['rps_c4']:.2f}x, "
                    f"c32 {ship['rps_c32'] / results[other]['rps_c32']:.2f}x"
                )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
