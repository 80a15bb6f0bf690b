"""Container builds: the serve and train images of a fresh template project, built from
scratch (``--no-cache``), then again with nothing changed (the layer cache), with podman
on the offline Debian base (``shipml base build``). Also the size of each image.

Each build is ``shipml.containers.build_image`` (what ``shipml build KIND`` runs): the
build context is assembled and the engine runs, so the times include shipml's own work.
Target: a rebuild with nothing changed under 20% of the first build's time.

    CONTAINERS_CONF=.venv/containers.conf .venv/bin/python benchmarks/containers.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from shipml.config import load_config
from shipml.containers import build_base, build_image, find_engine
from shipml.pipeline import run_pipeline
from shipml.project.promotion import promote
from shipml.templates import create_project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rebuilds per kind (median)")
    parser.add_argument("--kinds", default="serve,train")
    args = parser.parse_args()
    engine = find_engine("podman")
    started = time.perf_counter()
    base = build_base(engine)
    base_info = engine.inspect(base.tag)
    base_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        folder = create_project(Path(tmp) / "benchpenguins", "benchpenguins")
        toml = folder / "shipml.toml"
        toml.write_text(toml.read_text() + f'\n[containers]\nbase_image = "{base.tag}"\n')
        config = load_config(folder)
        result = run_pipeline(config, params={"n_estimators": 20})
        promote(
            config,
            f"{config.model_name}/{result.model_version.version}",
            force=True,
            reason="benchmark",
        )
        rows = []
        for kind in args.kinds.split(","):
            # podman 4.3 does not keep a --no-cache build's layers for the cache: fill
            # it first, or the "rebuild" would be a second first build.
            build_image(config, kind, engine=engine, record=False)
            first = build_image(config, kind, engine=engine, no_cache=True, record=False)
            again = [
                build_image(config, kind, engine=engine, record=False).seconds
                for _ in range(args.repeat)
            ]
            rebuild = statistics.median(again)
            rows.append((kind, first.seconds, rebuild, first.size, first.name))
    print(
        f"podman {engine.path}; base {base.tag} {base_info.size / 1e6:.0f} MB "
        f"({'built' if base.built else 'reused'} in {base_s:.1f} s)"
    )
    print(f"{'image':8} {'first s':>8} {'rebuild s':>10} {'ratio':>7} {'size MB':>8}")
    for kind, first_s, rebuild_s, size, name in rows:
        print(
            f"{kind:8} {first_s:8.1f} {rebuild_s:10.2f} {rebuild_s / first_s:7.3f} "
            f"{size / 1e6:8.0f}   {name}"
        )
    print("target: rebuild / first < 0.20")


if __name__ == "__main__":
    main()
