"""Gateway cost and shadow isolation, measured side by side.

1. Throughput and p99 of `shipml serve` called directly vs through `shipml gateway`
   (single mode) with the champion hosted in the gateway process, and with the
   champion as a remote `shipml serve` (one more HTTP hop).
2. Shadow at 100% with the champion in process and the shadow a remote server: the
   champion's p99 with the shadow alive, then with the shadow killed (SIGKILL).

Model: the breast-cancer LogisticRegression pipeline; wrk -t1 -c4, single-row V2
requests, median of --repeat runs. Audit off (servers run outside a project).

    .venv/bin/python benchmarks/gateway.py [--duration 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "serving"))
from run import free_port, wait_ready, wrk

BIN = Path(sys.executable).parent


def start(cmd: list[str], url: str, body: bytes) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir()
    )
    if not wait_ready(url, body):
        proc.kill()
        raise SystemExit(f"{cmd[1]} did not answer at {url}")
    return proc


def load(url: str, body: Path, seconds: int, repeat: int) -> tuple[float, float]:
    wrk(url, body, 4, 2)
    runs = [wrk(url, body, 4, seconds) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), statistics.median(r[2] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from shipml.model import build_package, model_input

    work = Path(tempfile.mkdtemp(prefix="shipml-gw-bench-"))
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    pkg = build_package(model.fit(model_input(X), y), X, y, path=work / "cancer").path
    row = X.iloc[0].astype(float).tolist()
    body = work / "v2.json"
    body.write_text(
        json.dumps(
            {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row}]}
        )
    )
    raw = body.read_bytes()
    path = "/v2/models/cancer/infer"
    serve = [str(BIN / "shipml"), "serve", str(pkg)]
    gateway = [str(BIN / "shipml"), "gateway"]
    results: dict[str, tuple[float, float]] = {}

    def launch(cmd: list[str]) -> tuple[subprocess.Popen[bytes], str]:
        """Start ``cmd`` on a free port; returns the process and its inference URL."""
        port = free_port()
        url = f"http://127.0.0.1:{port}{path}"
        return start([*cmd, "--port", str(port)], url, raw), url

    direct, direct_url = launch(serve)
    direct_base = direct_url[: -len(path)]
    results["direct"] = load(direct_url, body, args.duration, args.repeat)
    for name, champion in (
        ("gateway, champion in process", f"cancer={pkg}"),
        ("gateway, champion remote", f"cancer={direct_base}"),
    ):
        gw, url = launch([*gateway, "--champion", champion])
        results[name] = load(url, body, args.duration, args.repeat)
        gw.terminate()
        gw.wait()
    # shadow isolation: the direct server becomes the shadow
    gw, url = launch(
        [
            *gateway,
            "--mode",
            "shadow",
            "--champion",
            f"cancer={pkg}",
            "--challenger",
            f"shadow={direct_base}",
        ]
    )
    results["shadow 100%, shadow alive"] = load(url, body, args.duration, args.repeat)
    direct.kill()
    direct.wait()
    time.sleep(0.5)
    results["shadow 100%, shadow killed"] = load(url, body, args.duration, args.repeat)
    import urllib.request

    with urllib.request.urlopen(url[: -len(path)] + "/v1/rollout") as resp:
        shadow = json.loads(resp.read())["shadow"]
    gw.terminate()
    gw.wait()

    print(f"{'wrk -t1 -c4, median of ' + str(args.repeat):<34}{'req/s':>9}{'p99 ms':>9}")
    for name, (rps, p99) in results.items():
        print(f"{name:<34}{rps:>9.0f}{p99:>9.2f}")
    d = results["direct"][0]
    in_process = results["gateway, champion in process"][0]
    print(
        f"gateway cost, champion in process: {1 - in_process / d:.1%}"
        f" of direct throughput (target <= 15%)"
    )
    print(
        f"gateway cost, champion remote:     {1 - results['gateway, champion remote'][0] / d:.1%}"
    )
    alive, dead = results["shadow 100%, shadow alive"][1], results["shadow 100%, shadow killed"][1]
    print(
        f"champion p99 with the shadow killed: {dead / alive - 1:+.1%} (target < +20%); "
        f"shadow outcomes {shadow}"
    )


if __name__ == "__main__":
    main()
