"""The model server's own cost per request, in process: each ASGI app driven by asyncio
(no network, no uvicorn), so what is left is the work of the app itself.

Three apps on the same LogisticRegression package and single-row V2 body:
**audited** (`cancer@champion` inside a project, the audit log on, as users run it),
**unaudited** (the package folder, no project) and **baseline** (`baseline_app.py`, the
bare onnxruntime endpoint). ``--clients`` requests are in flight at once (as wrk -c4
keeps four), rounds are interleaved with the order rotated, and the ratios are the
medians of the per-round ratios. ``--profile NAME`` writes a cProfile of one app.

Two figures per app: wall time and CPU time (the process's, every thread) per request.
Read the CPU: on the 2-core VM the event loop also waits to run (its run-queue time in
/proc/self/task/*/schedstat grew by 0.4–0.6 s in 0.9 s of the audited app's commits,
behind kernel workers), so on 2026-12-04 every app's wall time was 1.5–2.6× its CPU
time and moved from run to run (the audited app 77–134 µs a request, its CPU 51–53).

    .venv/bin/python benchmarks/serving/hotpath.py [--rounds 9] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from audited import register  # noqa: E402
from run import train  # noqa: E402


def apps(work: Path) -> tuple[dict[str, tuple[Any, str]], bytes]:
    """The three ASGI apps (started: lifespan run) and the request body."""
    paths = train(work)["lr"]
    project = work / "project"
    project.mkdir()
    (project / "shipml.toml").write_text('[project]\nname = "bench"\n')
    for key in [k for k in os.environ if k.startswith("SHIPML_")]:
        del os.environ[key]
    register(project, paths["package"], "cancer")
    os.environ["BASELINE_ONNX"] = str(paths["package"] / "model.onnx")
    import baseline_app

    from shipml.config import load_config
    from shipml.project.serving import serve_spec
    from shipml.serving.server import build_app

    audited = build_app(serve_spec(load_config(project), "cancer@champion"))
    unaudited = build_app(serve_spec(None, str(paths["package"])))
    found = {
        "audited": (audited, "/v2/models/cancer/infer"),
        "unaudited": (unaudited, f"/v2/models/{paths['package'].name}/infer"),
        "baseline": (baseline_app.app, "/v2/models/x/infer"),
    }
    return found, (work / "v2.json").read_bytes()


async def lifespan(app: Any, kind: str) -> None:
    """Send one lifespan message (startup or shutdown) and wait for its answer."""
    done, never = asyncio.Event(), asyncio.Event()
    sent = False

    async def receive() -> dict[str, str]:
        nonlocal sent
        if sent:
            await never.wait()  # one message only; the task is cancelled once answered
        sent = True
        return {"type": f"lifespan.{kind}"}

    async def send(message: dict[str, Any]) -> None:
        done.set()

    task = asyncio.ensure_future(app({"type": "lifespan"}, receive, send))
    await done.wait()
    task.cancel()


async def drive(app: Any, path: str, raw: bytes, n: int, clients: int) -> None:
    """``n`` requests, ``clients`` of them in flight at a time; every answer a 200."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json")],
    }
    message = {"type": "http.request", "body": raw, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def client(count: int) -> None:
        for _ in range(count):
            status: list[int] = []

            async def send(msg: dict[str, Any], status: list[int] = status) -> None:
                if msg["type"] == "http.response.start":
                    status.append(msg["status"])

            await app(dict(scope), receive, send)
            assert status == [200], status

    await asyncio.gather(*(client(n // clients) for _ in range(clients)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--profile", default="", help="write a cProfile of this app")
    args = parser.parse_args()
    import uvloop

    work = Path(tempfile.mkdtemp(prefix="shipml-hotpath-"))
    found, raw = apps(work)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    for app, _ in found.values():
        loop.run_until_complete(lifespan(app, "startup"))
    names = list(found)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            app, path = found[name]
            started, used = time.perf_counter(), time.process_time()
            loop.run_until_complete(drive(app, path, raw, args.requests, args.clients))
            times[name].append((time.perf_counter() - started) / args.requests * 1e6)
            cpu[name].append((time.process_time() - used) / args.requests * 1e6)
    if args.profile:
        app, path = found[args.profile]
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(drive(app, path, raw, args.requests * 3, args.clients))
        profiler.disable()
        out = work / f"{args.profile}.prof"
        profiler.dump_stats(out)
        pstats.Stats(str(out)).sort_stats("tottime").print_stats(30)
    for app, _ in found.values():
        loop.run_until_complete(lifespan(app, "shutdown"))
    shutil.rmtree(work, ignore_errors=True)
    print(
        f"in process, {args.clients} requests in flight: microseconds per request, "
        f"median of {args.rounds} interleaved rounds of {args.requests}"
    )
    print(f"{'':<12}{'wall':>10}{'cpu':>10}")
    for name in names:
        wall, used = statistics.median(times[name]), statistics.median(cpu[name])
        print(f"{name:<12}{wall:>10.1f}{used:>10.1f}")
    for name in ("audited", "unaudited"):
        for label, figures in (("wall", times), ("cpu", cpu)):
            ratios = [b / s for s, b in zip(figures[name], figures["baseline"], strict=True)]
            print(f"{name}/baseline ({label}): median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
