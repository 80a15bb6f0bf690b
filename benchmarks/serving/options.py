"""What each serving option costs: live drift metrics on vs off, and OpenTelemetry
tracing (OTLP over HTTP/protobuf) at sampling ratio 1.0 and 0.1, against the default.

One model (scikit-learn's breast-cancer data, a StandardScaler + LogisticRegression
pipeline: 30 numeric features), four `shipml serve` processes started together, each
with one configuration:

    off       [monitor] live = false, no tracing
    default   live drift on (the default), no tracing
    otlp-1.0  live drift on, [tracing] exporter = "otlp", sampling_ratio = 1.0
    otlp-0.1  live drift on, [tracing] exporter = "otlp", sampling_ratio = 0.1

The OTLP exporter sends to a receiver on this machine (a small HTTP server that reads
each export and answers 200, counting requests and bytes), so the spans really leave
the server. Each round loads every server in turn with wrk (single-row V2 requests,
-t1, a rotated order per round); per round, the throughput ratios default/off,
otlp-1.0/default and otlp-0.1/default; reported: the median of the per-round ratios.
Beside throughput, the server's CPU time per answered request (user + system of the
whole process, every thread, and of its span exporter process), which a busy machine
disturbs far less than throughput. Live drift updates every 5 s (the default), so
each run of 5 s or more includes an update; the warm-up (6 s per server) lets the
first update happen before anything is measured. Needs wrk (`apt-get install wrk`).

With ``--before SRC`` (another checkout's ``src``, e.g. from ``git archive``), two more
servers run that code at ratio 1.0 and 0.1 (``before-otlp-1.0``, ``before-otlp-0.1``),
in the same rounds, so a change to tracing is measured before and after in one run.

    .venv/bin/python benchmarks/serving/options.py [--rounds 7] [--duration 5] [--connections 4]
        [--before /tmp/integ/src]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audited import server_cpu
from run import free_port, wait_ready, wrk

CONFIGS = ("off", "default", "otlp-1.0", "otlp-0.1")
RATIOS = (("live drift on/off", "default", "off"),)
RATIOS += (
    ("OTLP ratio 1.0/none", "otlp-1.0", "default"),
    ("OTLP ratio 0.1/none", "otlp-0.1", "default"),
)
TARGETS = {"live drift on/off": 0.95, "OTLP ratio 1.0/none": 0.80, "OTLP ratio 0.1/none": 0.95}

LAUNCH = """
import json, sys
from shipml.serving.server import ServeSpec, run
run(ServeSpec(**json.loads(sys.argv[1])), port=int(sys.argv[2]))
"""


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint that reads and counts what it is sent."""

    counts: ClassVar[dict[str, int]] = {"requests": 0, "bytes": 0}
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.counts["requests"] += 1
            self.counts["bytes"] += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def package(workdir: Path) -> Path:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from shipml.data import table_profile
    from shipml.model import build_package, model_input

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(model_input(X), y)
    # with its reference profile, as `shipml run` packages it: live drift needs one
    built = build_package(model, X, y, path=workdir / "bc", reference_profile=table_profile(X))
    path = built.path
    row = X.iloc[0].astype(float).tolist()
    body = {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
    (workdir / "v2.json").write_text(json.dumps(body))
    return Path(path)


def spec(config: str, folder: Path, otlp: str) -> dict[str, object]:
    monitor = {"live": config != "off"}  # updated every live_interval_s (5 s by default)
    tracing: dict[str, object] = {}
    if "otlp" in config:
        ratio = float(config.split("-")[-1])
        tracing = {"exporter": "otlp", "endpoint": otlp, "sampling_ratio": ratio}
    return {
        "package": str(folder),
        "name": "bc",
        "monitor": monitor,
        "tracing": tracing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--before", type=Path, help="another checkout's src, for before/after")
    args = parser.parse_args()
    configs, ratios_of = CONFIGS, RATIOS
    if args.before is not None:
        configs += ("before-otlp-1.0", "before-otlp-0.1")
        ratios_of += (
            ("before: OTLP 1.0/none", "before-otlp-1.0", "default"),
            ("before: OTLP 0.1/none", "before-otlp-0.1", "default"),
        )
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="shipml-bench-options-"))
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{receiver.server_address[1]}/v1/traces"
    folder = package(workdir)
    body = workdir / "v2.json"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    try:
        for config in configs:
            port = free_port()
            env = dict(os.environ)
            if config.startswith("before"):
                env["PYTHONPATH"] = str(args.before.resolve())
            procs[config] = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, json.dumps(spec(config, folder, otlp)), str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            urls[config] = f"http://127.0.0.1:{port}/v2/models/bc/infer"
        for config, url in urls.items():
            if not wait_ready(url, body.read_bytes()):
                raise SystemExit(f"{config} did not answer at {url}")
            wrk(url, body, args.connections, 6)  # warm-up
        rps: dict[str, list[float]] = {c: [] for c in configs}
        p99: dict[str, list[float]] = {c: [] for c in configs}
        cpu: dict[str, list[float]] = {c: [] for c in configs}
        ratios: dict[str, list[float]] = {name: [] for name, _, _ in ratios_of}
        cpu_ratios: dict[str, list[float]] = {name: [] for name, _, _ in ratios_of}
        for r in range(args.rounds):
            order = configs[r % len(configs) :] + configs[: r % len(configs)]
            got, cost = {}, {}
            for config in order:
                before = server_cpu(procs[config].pid)
                got[config] = wrk(urls[config], body, args.connections, args.duration)
                used = server_cpu(procs[config].pid) - before
                cost[config] = used / (got[config][0] * args.duration) * 1e6
                rps[config].append(got[config][0])
                p99[config].append(got[config][2])
                cpu[config].append(cost[config])
            for name, a, b in ratios_of:
                ratios[name].append(got[a][0] / got[b][0])
                cpu_ratios[name].append(cost[a] / cost[b])
            print(
                f"round {r + 1}: "
                + "  ".join(f"{c} {got[c][0]:.0f}/s {cost[c]:.0f}µs" for c in configs)
                + "  |  "
                + "  ".join(
                    f"{n} {ratios[n][-1]:.3f} (cpu {cpu_ratios[n][-1]:.3f})"
                    for n, _, _ in ratios_of
                ),
                flush=True,
            )
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        receiver.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\nwrk -t1 -c{args.connections}, {args.rounds} rounds x {args.duration}s per "
        "configuration, single-row V2 requests"
    )
    print(f"{'configuration':<16}{'req/s':>10}{'p99 ms':>9}{'cpu µs/req':>12}   (medians)")
    for c in configs:
        print(
            f"{c:<16}{statistics.median(rps[c]):>10.0f}{statistics.median(p99[c]):>9.2f}"
            f"{statistics.median(cpu[c]):>12.1f}"
        )
    got = Receiver.counts
    print(f"OTLP receiver: {got['requests']} exports, {got['bytes']:,} bytes")
    for name, _, _ in ratios_of:
        median = statistics.median(ratios[name])
        target = TARGETS[name.replace("before: OTLP ", "OTLP ratio ")]
        verdict = "meets" if median >= target else "misses"
        print(
            f"{name:<24} throughput ratio {median:.3f} (cost {1 - median:+.1%}; "
            f"target cost <= {1 - target:.0%}: {verdict}); "
            f"cpu per request {statistics.median(cpu_ratios[name]):.3f}x"
        )


if __name__ == "__main__":
    main()
