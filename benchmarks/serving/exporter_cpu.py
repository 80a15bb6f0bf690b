"""What the span exporter process spends per traced request: the records of 51,200
requests (a scored request's record and its request span's, as the model server queues
them), marshalled as the server's span thread hands them over, fed to a real exporter
process (`serving/otlp_sender.py`) that encodes them and POSTs them to an OTLP receiver
in this process; its CPU time (user and system) divided by the requests. The variants
are interleaved over rounds (this machine's speed drifts by a third within minutes):
this checkout with the request span as a record, the same with it as a plain span (its
attributes in a dict, as the server queued it before), and with ``--before SRC``
another checkout's exporter process given plain spans. Reported: medians, and the
median of the per-round ratios to the first.

    .venv/bin/python benchmarks/serving/exporter_cpu.py [--rounds 7] [--before /tmp/before/src]
"""

from __future__ import annotations

import argparse
import marshal
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from options import Receiver

from shipml.serving import otlp_sender
from shipml.serving.otlp_sender import FRAME
from shipml.serving.span_records import SCORED, SERVED

FRAMES, CHUNKS, GROUP = 100, 32, 16  # hand-overs, chunks per hand-over, requests per chunk
ROUTE, PATH = "/v2/models/{name}/infer", "/v2/models/bc/infer"


def request(i: int, now: int, generic: bool) -> list[tuple[object, ...]]:
    """One traced request's records, as the model server queues them."""
    trace, root, rid = random.getrandbits(128), random.getrandbits(64), f"abcdef123456-{i}"
    scored = (SCORED, trace, root, now, now + 1000, now + 9000, (now, now + 5000, 4), rid, "")
    if generic:
        attributes = {
            "http.request.method": "POST",
            "http.route": ROUTE,
            "url.path": PATH,
            "shipml.request_id": rid,
            "http.response.status_code": 200,
        }
        name = f"POST {ROUTE}"
        served: tuple[object, ...] = (trace, root, 0, name, 2, now, now + 20000, attributes, "")
    else:
        served = (SERVED, trace, root, 0, now, now + 20000, "POST", ROUTE, PATH, rid, 200, None, "")
    return [scored, served]


def frames(generic: bool) -> list[bytes]:
    now, out = time.time_ns(), []
    for f in range(FRAMES):
        chunks = []
        for c in range(CHUNKS):
            records = []
            for r in range(GROUP):
                records += request((f * CHUNKS + c) * GROUP + r, now, generic)
            chunks.append(marshal.dumps(records))
        data = marshal.dumps(chunks)
        out.append(FRAME.pack(len(data)) + data)
    return out


def measure(url: str, data: list[bytes], src: Path | None = None) -> float:
    """The exporter process's CPU µs per request for ``data`` (``src``: another
    checkout's exporter process)."""
    script = otlp_sender.__file__ if src is None else src / "shipml/serving/otlp_sender.py"
    env = None if src is None else {**os.environ, "PYTHONPATH": str(src)}
    child = subprocess.Popen(
        [sys.executable, "-P", str(script), url, "bench"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdin is not None and child.stdout is not None
    time.sleep(0.5)  # started and imported: not counted
    process = psutil.Process(child.pid)
    before = process.cpu_times()
    for frame in data:
        child.stdin.write(frame)
    flush = marshal.dumps(None)  # answered once everything before it is sent
    child.stdin.write(FRAME.pack(len(flush)) + flush)
    child.stdin.flush()
    child.stdout.readline()
    after = process.cpu_times()
    child.stdin.close()
    child.wait()
    used = (after.user - before.user) + (after.system - before.system)
    return used / (FRAMES * CHUNKS * GROUP) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before", type=Path, help="another checkout's src")
    args = parser.parse_args()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/v1/traces"
    records, plain = frames(generic=False), frames(generic=True)
    variants: dict[str, tuple[list[bytes], Path | None]] = {
        "request span as a record": (records, None),
        "request span as a plain span": (plain, None),
    }
    if args.before is not None:
        variants[f"{args.before}, plain spans"] = (plain, args.before)
    names = list(variants)
    got: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            got[name].append(measure(url, *variants[name]))
    print(f"exporter process CPU per request, {args.rounds} interleaved rounds of 51,200")
    first = names[0]
    for name in names:
        ratio = statistics.median(b / a for a, b in zip(got[first], got[name], strict=True))
        rounds = " ".join(f"{x:.2f}" for x in got[name])
        print(
            f"  {name:<40} {statistics.median(got[name]):5.2f} µs  /first {ratio:.2f}  ({rounds})"
        )
    receiver.shutdown()
    receiver.server_close()


if __name__ == "__main__":
    main()
