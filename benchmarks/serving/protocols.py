"""The Open Inference Protocol's three ways in, side by side on one `shipml serve`: V2 JSON,
V2 binary tensors (the Inference-Header-Content-Length extension) and V2 gRPC.

The clients are Triton's own (tritonclient.http with binary_data=False for JSON, with its
defaults for binary; tritonclient.grpc), so each request pays what a real client pays to
encode and decode. Breast-cancer LogisticRegression package, one client, requests back to
back, for 1 row and for 2,000 rows per request. Rounds interleave the protocols
(JSON, binary, gRPC, JSON, ...); the figure is the median over rounds of each round's
ratio to JSON, so a busy machine slows all three alike.

    .venv/bin/python benchmarks/serving/protocols.py [--rounds 7] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def package(workdir: Path) -> tuple[Path, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from shipml.model import build_package, model_input

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(model_input(X), y)
    path = build_package(model, X, y, path=workdir / "cancer").path
    return path, X.to_numpy(np.float32)


def callers(http_address: str, grpc_address: str, rows: np.ndarray) -> dict[str, object]:
    import tritonclient.grpc as tg
    import tritonclient.http as th

    http = th.InferenceServerClient(http_address)
    grpc = tg.InferenceServerClient(grpc_address)

    def json_call() -> None:
        x = th.InferInput("input", list(rows.shape), "FP32")
        x.set_data_from_numpy(rows, binary_data=False)
        outs = [th.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")]
        http.infer("cancer", [x], outputs=outs).as_numpy("probabilities")

    def binary_call() -> None:
        x = th.InferInput("input", list(rows.shape), "FP32")
        x.set_data_from_numpy(rows)
        http.infer("cancer", [x]).as_numpy("probabilities")

    def grpc_call() -> None:
        x = tg.InferInput("input", list(rows.shape), "FP32")
        x.set_data_from_numpy(rows)
        grpc.infer("cancer", [x]).as_numpy("probabilities")

    return {"json": json_call, "binary": binary_call, "grpc": grpc_call}


def rate(call: object, seconds: float) -> float:
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        call()  # type: ignore[operator]
        done += 1
    return done / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, X = package(Path(tmp))
        port, grpc_port = free_port(), free_port()
        command = [str(BIN / "shipml"), "serve", str(path), "--port", str(port)]
        server = subprocess.Popen(
            [*command, "--grpc-port", str(grpc_port)], stderr=subprocess.DEVNULL
        )
        try:
            for rows in (X[:1], np.tile(X, (4, 1))[:2000]):
                calls = callers(f"127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", rows)
                deadline = time.monotonic() + 60
                while True:  # until the server answers
                    try:
                        for call in calls.values():
                            call()  # type: ignore[operator]
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
                report(calls, len(rows), args.rounds, args.seconds)
        finally:
            server.terminate()
            server.wait(30)


def report(calls: dict[str, object], rows: int, rounds: int, seconds: float) -> None:
    rates: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():  # interleaved: json, binary, grpc, json, ...
            rates[name].append(rate(call, seconds))
    print(f"\n{rows} row(s) per request, {rounds} rounds of {seconds:g} s each")
    for name, values in rates.items():
        ratios = [v / j for v, j in zip(values, rates["json"], strict=True)]
        print(
            f"  {name:7s} {statistics.median(values):9.1f} req/s  "
            f"{statistics.median(values) * rows:11.0f} rows/s  "
            f"× JSON (median of rounds) {statistics.median(ratios):5.2f}"
        )


if __name__ == "__main__":
    main()
