"""This checkout's model server against another git ref's, and both against the bare
ONNX endpoint, in one interleaved run (wrk -t1 -c4, single-row V2 requests).

Six servers run at once, idle between turns: the ref's and this checkout's `shipml
serve cancer@champion` inside a project (the audit log on and live drift on, as users
run it; one project each, so they never share a log), the ref's and this checkout's
`shipml serve PACKAGE` (a package folder, no audit log, live drift on), this checkout's
`shipml serve` of the same model packaged without a reference profile (live drift off,
as packages were served before it existed) and `baseline_app.py`. Every server is one uvicorn
process on uvloop with httptools, access log off. Each round loads each server in turn
(the order rotated per round); reported: median req/s, server CPU per request, and the
median of the per-round ratios to the baseline. The ref runs from `git archive REF src`
put first on PYTHONPATH, with this checkout's virtual environment.

    .venv/bin/python benchmarks/serving/versus.py --ref integ [--rounds 5] [--duration 6]
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from audited import register, requests_done, server_cpu  # noqa: E402
from run import BIN, free_port, train, wait_ready  # noqa: E402


def checkout(ref: str, into: Path) -> Path:
    """``src`` of ``ref`` unpacked under ``into``; the folder to put on PYTHONPATH."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent.parent), "archive", ref, "src"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", default="main")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=6)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipml-versus-"))
    paths = train(work)["lr"]
    body = work / "v2.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    env["BASELINE_ONNX"] = str(paths["package"] / "model.onnx")
    old = {**env, "PYTHONPATH": str(checkout(args.ref, work / "ref"))}
    serve, package = [str(BIN / "shipml"), "serve"], str(paths["package"])
    servers: dict[str, tuple[list[str], Path, str, dict[str, str]]] = {}
    for label, version_env in ((args.ref, old), ("this", env)):
        project = work / f"project-{label}"
        project.mkdir()
        (project / "shipml.toml").write_text('[project]\nname = "bench"\n')
        register(project, paths["package"], "cancer")
        servers[f"{label} audited"] = ([*serve, "cancer@champion"], project, "cancer", version_env)
        servers[f"{label} package"] = ([*serve, package], work, paths["package"].name, version_env)
    bare = paths["no profile"]  # no reference profile: live drift off, as before it existed
    servers["this package, live off"] = ([*serve, str(bare)], work, bare.name, env)
    uvicorn = [str(BIN / "uvicorn"), "baseline_app:app", "--loop", "uvloop", "--http", "httptools"]
    servers["baseline"] = ([*uvicorn, "--log-level", "warning"], HERE, "x", env)
    procs, urls = {}, {}
    try:
        for name, (cmd, cwd, model, server_env) in servers.items():
            port = free_port()
            procs[name] = subprocess.Popen(
                [*cmd, "--port", str(port)],
                cwd=cwd,
                env=server_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            urls[name] = f"http://127.0.0.1:{port}/v2/models/{model}/infer"
            if not wait_ready(urls[name], body.read_bytes()):
                raise SystemExit(f"{name} did not answer at {urls[name]}")
        body.with_suffix(".lua").write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body}"); wrk.body = f:read("*a"); f:close()\n'
        )
        for url in urls.values():
            requests_done(url, body, 2)  # warm-up
        names = list(urls)
        rps: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                used = server_cpu(procs[name].pid)
                rate, count = requests_done(urls[name], body, args.duration)
                rps[name].append(rate)
                cpu[name].append((server_cpu(procs[name].pid) - used) / count * 1e6)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)  # two projects, two packages, the ref's src
    print(
        f"wrk -t1 -c4, single-row V2 requests, {args.rounds} interleaved rounds x "
        f"{args.duration}s; ratios: median of per-round ratios to the baseline"
    )
    for name in names:
        ratios = [a / b for a, b in zip(rps[name], rps["baseline"], strict=True)]
        print(
            f"{name:<18}{statistics.median(rps[name]):>8.0f} req/s   server CPU "
            f"{statistics.median(cpu[name]):>5.0f} us/request   "
            f"/baseline {statistics.median(ratios):.2f}x  {[round(x, 2) for x in ratios]}"
        )


if __name__ == "__main__":
    main()
