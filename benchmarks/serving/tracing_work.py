"""What recording a traced request costs the request path, in machine instructions: the
calls `serving/app.py` makes for one sampled request (the server span, `validate`,
`batch` → `model` in one `Tracing.scored` call, the status attribute) run N and 11 N
times under valgrind's cachegrind, and the difference divided by 10 N. Instructions,
unlike time, do not depend on what else the machine runs, so before/after holds on a
shared machine (hash randomisation off, so that both runs do the same work). They
still vary by a few percent from run to run (the ids are random; once a run was off by
a quarter), so compare medians of a few runs. No
exporter thread runs (the queued bytes are dropped now and then): this is the request
path's own work.

    apt-get install valgrind
    .venv/bin/python benchmarks/serving/tracing_work.py [--requests 1000] [--src OTHER/src ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REQUESTS = """
import sys
import time
from shipml.serving.otlp import Exporter
from shipml.serving.tracing import Tracing

exporter = Exporter("work", endpoint="http://127.0.0.1:9/v1/traces")
exporter._thread = object()  # as if started: no thread, no exporter process
tracing = Tracing(exporter, ratio=1.0)
headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json")]
route, path = "/v2/models/{name}/infer", "/v2/models/bc/infer"
SCORED = hasattr(tracing, "scored")


def request(rid):
    with tracing.request_span("POST", route, path, headers, rid) as span:
        if not SCORED:  # a checkout from before Tracing.scored (--src): its calls
            with tracing.span("validate"):
                pass
            with tracing.span("batch", **{"shipml.request_id": rid}):
                tracing.record("model", 1764000000000000000, 1764000000000090000,
                               **{"shipml.batch.rows": 1})
        elif tracing.enabled and tracing.recording():
            begun = time.time_ns()
            parsed = time.time_ns()
            ended = time.time_ns()
            tracing.scored(begun, parsed, ended, rid, (begun, ended, 1))
        span.set_attribute("http.response.status_code", 200)
    if len(exporter.queue) > 500:
        exporter.queue.clear()
        exporter.taken = exporter.queued


for i in range(int(sys.argv[1])):
    request("req-%d" % i)
"""


def instructions(src: str | None, requests: int) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")
    if src:
        env["PYTHONPATH"] = src
    grind = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    out = subprocess.run(
        [*grind, sys.executable, "-c", REQUESTS, str(requests)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stderr
    found = re.search(r"I\s+refs:\s+([\d,]+)", out)
    assert found, out
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--src", action="append", default=[], help="another checkout's src")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    for src in [None, *args.src]:
        n = args.requests
        per = (instructions(src, 11 * n) - instructions(src, n)) / (10 * n)
        name = "this checkout" if src is None else str(Path(src))
        print(f"{name:<40} {per:9,.0f} instructions per traced request")


if __name__ == "__main__":
    main()
