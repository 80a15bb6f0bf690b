"""``shipml demo``: the local journey on embedded defaults, in a fresh folder.

Creates a project, snapshots its data, runs the pipeline (tracked in MLflow),
registers the model package and makes it the champion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from shipml.config import load_config
from shipml.data import DatasetStore, Snapshot
from shipml.model import ModelPackage
from shipml.pipeline import RunResult, run_pipeline
from shipml.pipeline.display import Reporter
from shipml.templates import create_project
from shipml.tracking import Registry, tracker_for


@dataclass
class DemoResult:
    folder: Path
    snapshot: Snapshot
    run: RunResult
    package: ModelPackage
    store_uri: str
    seconds: float


def fresh_folder(base: Path, stem: str = "shipml-demo") -> Path:
    """``base/stem``, or ``stem-2``, ``stem-3``... whichever does not exist yet."""
    candidate, i = base / stem, 2
    while candidate.exists():
        candidate, i = base / f"{stem}-{i}", i + 1
    return candidate


def run_demo(folder: Path, *, reporter: Reporter | None = None) -> DemoResult:
    started = time.perf_counter()
    create_project(folder, "penguins")
    config = load_config(folder)
    store = DatasetStore(config.artifact_root, config.root)
    snapshot = store.add("penguins", config.datasets["penguins"].source)
    run = run_pipeline(config, reporter=reporter, alias="champion")
    registry = Registry(tracker_for(config))
    version = registry.resolve(f"{config.model_name}@champion")
    package = ModelPackage.load(registry.local_path(version))
    return DemoResult(
        folder=folder,
        snapshot=snapshot,
        run=run,
        package=package,
        store_uri=config.tracking_uri,
        seconds=time.perf_counter() - started,
    )
