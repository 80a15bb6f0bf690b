"""``shipml demo``: the local journey on embedded defaults, in a fresh folder.

Creates a project, snapshots its data, runs the pipeline (tracked in MLflow),
registers the model package as the challenger, tests it (unit, data, model and api
suites, and the browser suite where Chromium is installed), promotes it to champion
through the gates, and serves one audited prediction.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.asgi import post_json
from shipml.config import ProjectConfig, load_config
from shipml.data import DatasetStore, Snapshot
from shipml.errors import ShipmlError, TestingError
from shipml.model import ModelPackage
from shipml.pipeline import RunResult, run_pipeline
from shipml.pipeline.display import Reporter
from shipml.project.promotion import Promotion, promote
from shipml.project.serving import serve_spec
from shipml.serving.server import build_app
from shipml.templates import create_project
from shipml.testing.runner import TestRun, run_tests
from shipml.tracking import VersionInfo, registry_for


@dataclass
class DemoResult:
    folder: Path
    snapshot: Snapshot
    run: RunResult
    package: ModelPackage
    store_uri: str
    seconds: float
    request_id: str = ""
    prediction: dict[str, Any] = field(default_factory=dict)
    tests: TestRun | None = None
    promotion: Promotion | None = None
    version: VersionInfo | None = None  # the champion, after the promotion


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
    run = run_pipeline(config, reporter=reporter, alias="challenger")
    challenger = f"{config.model_name}@challenger"
    suites = ["unit", "data", "model", "api"] + (["browser"] if browser_available() else [])
    tests = run_tests(config, challenger, suites=suites)
    if not tests.passed:
        raise tests_failed(tests)
    promotion = promote(config, challenger)
    registry = registry_for(config)
    version = registry.resolve(f"{config.model_name}@champion")
    package = ModelPackage.load(registry.local_path(version))
    request_id, prediction = serve_one(config, f"{config.model_name}@champion", snapshot, store)
    return DemoResult(
        folder=folder,
        snapshot=snapshot,
        run=run,
        package=package,
        store_uri=config.tracking_uri,
        seconds=time.perf_counter() - started,
        request_id=request_id,
        prediction=prediction,
        tests=tests,
        promotion=promotion,
        version=version,
    )


# Checks whose outcome depends on how busy the machine is, not only on shipml.
TIMING_CHECKS = frozenset({"model.latency", "api.load"})


def tests_failed(tests: TestRun) -> ShipmlError:
    """The error for a failed demo: a timing check on a busy machine is the environment's
    doing and said so; any other failure is a bug in shipml's template."""
    report = tests.output / "report.html"
    failed = [t for t in tests.results.get("tests", []) if t.get("outcome") in ("failed", "error")]
    if failed and all(t.get("check") in TIMING_CHECKS for t in failed):
        said = "; ".join(f"{t['check']}: {t.get('message', '')}" for t in failed)
        return TestingError(
            f"the machine is too busy for the demo's latency budgets ({said[:400]})",
            hint=f"this is the environment, not a bug: rerun `shipml demo` when the machine "
            f"is quieter (details in {report})",
        )
    names = ", ".join(str(t.get("check") or t.get("nodeid")) for t in failed[:5])
    return ShipmlError(
        f"the demo model failed its tests ({names or 'see the report'}; {report})",
        hint="this is a bug in shipml's template; please report it",
    )


def browser_available() -> bool:
    """Playwright and a Chromium are installed (the browser suite can run)."""
    import importlib.util

    from shipml.errors import TestingError
    from shipml.testing.browser import chromium_executable

    try:
        return importlib.util.find_spec("playwright") is not None and bool(chromium_executable())
    except TestingError:
        return False


def serve_one(
    config: ProjectConfig, ref: str, snapshot: Snapshot, store: DatasetStore
) -> tuple[str, dict[str, Any]]:
    """One prediction through the model server (in process, audited like any other)."""
    spec = serve_spec(config, ref)
    app = build_app(spec)
    names = ModelPackage.load(spec.package).signature.names
    row = store.load(snapshot)[names].iloc[0]
    instance = {
        k: (None if v != v else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()
    }
    app.warm_up()
    answer = asyncio.run(post_json(app, "/predict", {"instances": [instance]}))
    if answer.status != 200:
        raise ShipmlError(
            f"the demo prediction failed ({answer.status}): {answer.body[:300].decode()}"
        )
    if app.audit is not None:
        app.audit.close()
    return answer.headers["x-request-id"], dict(answer.json())
