"""Cold start of `shipml serve`: a registry reference (NAME@ALIAS) against the package
folder it names, interleaved over rounds.

Makes a project from the template, runs its pipeline (the model registered as
champion's version), then in each round starts `shipml serve penguins@champion` and
`shipml serve FOLDER` (in turn, the order alternating) and times each from process
start to the first successful prediction. Both run inside the project, so both open the
audit log, as a user's would. Reports the medians and the median of per-round ratios.

    .venv/bin/python benchmarks/serve_start.py [--rounds 7]
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
from run import free_port, wait_ready

BIN = Path(sys.executable).parent


def project() -> tuple[Path, Path, bytes]:
    """A trained project, its champion's package folder and one request body."""
    from shipml.config import load_config
    from shipml.model import ModelPackage
    from shipml.project.promotion import promote
    from shipml.project.run import run
    from shipml.templates import create_project
    from shipml.tracking import resolve_model

    folder = create_project(Path(tempfile.mkdtemp(prefix="shipml-start-")) / "penguins", "penguins")
    config = load_config(folder)
    run(config)
    promote(config, "penguins/1", force=True, reason="benchmark")
    package = resolve_model(config, "penguins@champion").path
    X, _ = ModelPackage.load(package).holdout()
    row = {k: (None if v != v else v) for k, v in X.iloc[0].to_dict().items()}
    return folder, package, json.dumps({"instances": [row]}).encode()


def start(ref: str, cwd: Path, body: bytes) -> float:
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "shipml"), "serve", ref, "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_ready(f"http://127.0.0.1:{port}/predict", body, timeout=60):
            raise SystemExit(f"`shipml serve {ref}` did not answer")
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    folder, package, body = project()
    kinds = {"registry reference": "penguins@champion", "package folder": str(package)}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    start(kinds["package folder"], folder, body)  # warm the file cache
    for r in range(args.rounds):
        order = list(kinds) if r % 2 == 0 else list(reversed(kinds))
        for kind in order:
            times[kind].append(start(kinds[kind], folder, body))
    print(f"cold start to the first prediction, {args.rounds} interleaved rounds (medians)")
    for kind, values in times.items():
        shown = " ".join(f"{v:.2f}" for v in values)
        print(f"{kind:<20}{statistics.median(values):>7.2f} s   ({shown})")
    ratios = [a / b for a, b in zip(*times.values(), strict=True)]
    print(
        f"reference / folder: {statistics.median(ratios):.2f} (median of per-round ratios); "
        f"target: reference < 1.5 s"
    )


if __name__ == "__main__":
    main()
