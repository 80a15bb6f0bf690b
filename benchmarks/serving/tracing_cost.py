"""What tracing costs the server's own process: requests sent in-process to the ASGI app
(no HTTP, one at a time), tracing off, OTLP at ratio 1.0 and 0.1, interleaved over
rounds; per configuration the median CPU time per request of the whole process (its
span thread included; the exporter process and the OTLP receiver, a process of its
own, not) and the garbage collections per round. Live drift off. Far steadier than
throughput on a busy machine.

    .venv/bin/python benchmarks/serving/tracing_cost.py [--rounds 7] [--requests 10000]
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/serving/tracing_cost.py  # other code
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import options

RECEIVER = (
    "import sys; sys.path.insert(0, sys.argv[1]); import options;"
    "from http.server import ThreadingHTTPServer as T;"
    "r = T(('127.0.0.1', 0), options.Receiver); print(r.server_address[1], flush=True);"
    "r.serve_forever()"
)
CONFIGS = ("default", "otlp-1.0", "otlp-0.1")


async def _load(app: Any, body: bytes, n: int) -> None:
    headers = [(b"content-type", b"application/json"), (b"host", b"bench")]
    scope = {"type": "http", "method": "POST", "path": "/v2/models/bc/infer", "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    for _ in range(n):
        await app(dict(scope), receive, send)


def main() -> None:
    from shipml.serving.server import ServeSpec, build_app

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent)
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, here], stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    otlp = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/v1/traces"
    collections = [0]
    gc.callbacks.append(lambda phase, info: collections.__setitem__(0, collections[0] + 1))
    try:
        workdir = Path(tempfile.mkdtemp(prefix="shipml-bench-tracing-"))
        folder = options.package(workdir)
        body = (workdir / "v2.json").read_bytes()
        apps = {}
        for config in CONFIGS:
            spec = options.spec(config, folder, otlp)
            spec["monitor"] = {"live": False}
            apps[config] = build_app(ServeSpec(**spec))  # type: ignore[arg-type]
            apps[config].warm_up()
            asyncio.run(_load(apps[config], body, 2000))
        cpu: dict[str, list[float]] = {c: [] for c in CONFIGS}
        gcs: dict[str, list[int]] = {c: [] for c in CONFIGS}
        for _ in range(args.rounds):
            for config, app in apps.items():
                collections[0] = 0
                started = time.process_time()
                asyncio.run(_load(app, body, args.requests))
                if app.tracing.exporter is not None:
                    app.tracing.exporter._hand_over()  # what the thread has left to do
                cpu[config].append((time.process_time() - started) / args.requests * 1e6)
                gcs[config].append(collections[0] // 2)  # a start and a stop per collection
    finally:
        receiver.terminate()
    print(f"{args.rounds} rounds x {args.requests} in-process requests, medians")
    base = statistics.median(cpu["default"])
    for config in CONFIGS:
        median = statistics.median(cpu[config])
        print(
            f"{config:<10} {median:6.1f} µs CPU/request ({median - base:+5.1f})  "
            f"collections per round {statistics.median(gcs[config]):.0f}"
        )


if __name__ == "__main__":
    main()
