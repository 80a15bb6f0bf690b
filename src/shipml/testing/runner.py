"""``shipml test``: run the suites through pytest, write the results, attach them to the
model version.

pytest runs in its own process (a clean interpreter, the project's conftest.py and
tests as the user would run them) with shipml's plugin; the ready-made checks come
from ``shipml.toml``, the project's own tests from ``[tests] paths``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import TestingError
from shipml.testing.check import SUITES
from shipml.testing.report import JUNIT, REPORT, RESULTS
from shipml.testing.subject import resolve_ref
from shipml.tracking import Registry, parse_model_ref, tracker_for

# Model version tags written by `shipml test` (read by `shipml models show` and gates).
TAG_STATUS = "shipml.tests.status"
TAG_SUMMARY = "shipml.tests.summary"
TAG_SUITES = "shipml.tests.suites"
TAG_METRICS = "shipml.tests.metrics"
TAG_FILES = "shipml.tests.files"
TAG_TIME = "shipml.tests.time"


@dataclass
class TestRun:
    __test__ = False  # not a pytest test class

    ref: str
    exit_code: int
    output: Path
    results: dict[str, Any]
    attached: list[str]

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def parse_suites(value: str | list[str] | None, config: ProjectConfig) -> list[str]:
    names = (
        [s.strip() for s in value.split(",") if s.strip()]
        if isinstance(value, str)
        else list(value or config.tests.suites)
    )
    unknown = [s for s in names if s not in SUITES]
    if unknown or not names:
        raise TestingError(
            f"unknown suite {unknown[0]!r}" if unknown else "no suite to run",
            hint=f"choose from {', '.join(SUITES)} (comma-separated)",
        )
    return names


def run_tests(
    config: ProjectConfig,
    ref: str | None = None,
    *,
    against: str | None = None,
    suites: str | list[str] | None = None,
    output: Path | None = None,
    attach: bool = True,
    extra_args: list[str] | None = None,
) -> TestRun:
    """Run the chosen suites on the model ``ref``; returns pytest's exit code and the
    results (also written to ``output``: junit.xml, report.html, results.json)."""
    chosen = parse_suites(suites, config)
    ref = resolve_ref(config, ref)
    out = (output or config.path(config.tests.output)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in (JUNIT, REPORT, RESULTS):
        (out / name).unlink(missing_ok=True)
    paths = [str(config.root / "shipml.toml")]
    if "unit" in chosen or any(s in chosen for s in SUITES):
        paths += [str(config.path(p)) for p in config.tests.paths if config.path(p).exists()]
    cmd = [
        sys.executable, "-m", "pytest", *paths,
        "-p", "shipml.testing.plugin", "-p", "no:cacheprovider",
        "-m", " or ".join(chosen),
        "--rootdir", str(config.root),
        f"--junitxml={out / JUNIT}", "-o", "junit_family=xunit2",
        "-o", "junit_suite_name=shipml", "-o", "junit_duration_report=call",
        "--shipml-model", ref, "--shipml-results", str(out),
        "--shipml-project", str(config.root),
        "-q", "-rfEs", "--color=no",
        *(["--shipml-against", against] if against else []),
        *(extra_args or []),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(cmd, cwd=config.root, env=env, check=False)
    if proc.returncode in (2, 3, 4):  # interrupted, internal error, usage error
        raise TestingError(
            f"pytest could not run the tests (exit code {proc.returncode})",
            hint="see pytest's output above",
        )
    results_file = out / RESULTS
    if not results_file.is_file():
        raise TestingError(f"pytest wrote no {RESULTS} into {out}", hint="see pytest's output")
    results = json.loads(results_file.read_text(encoding="utf-8"))
    attached: list[str] = []
    if attach:
        attached = attach_results(config, ref, out, results)
    return TestRun(ref, proc.returncode, out, results, attached)


def attach_results(
    config: ProjectConfig, ref: str, folder: Path, results: dict[str, Any]
) -> list[str]:
    """Log junit.xml, report.html and results.json (and screenshots) to the model
    version's run under ``tests/<time>/`` and record a summary in version tags."""
    parsed = parse_model_ref(ref)
    if parsed.path is not None:
        return []
    tracker = tracker_for(config)
    registry = Registry(tracker)
    info = registry.resolve(parsed)
    if not info.run_id:
        return []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    artifact_path = f"tests/{stamp}"
    files = [folder / n for n in (JUNIT, REPORT, RESULTS)]
    shots = folder / "screenshots"
    for file in files:
        if file.is_file():
            tracker.client.log_artifact(info.run_id, str(file), artifact_path)
    if shots.is_dir():
        tracker.client.log_artifacts(info.run_id, str(shots), f"{artifact_path}/screenshots")
    base = f"{tracker.artifact_uri(info.run_id)}/{artifact_path}"
    uris = [f"{base}/{f.name}" for f in files if f.is_file()]
    summary = results["summary"]
    suites = {k: v["status"] for k, v in results["suites"].items()}
    tags = {
        TAG_STATUS: summary["status"],
        TAG_SUMMARY: f"{summary['passed']} passed, {summary['failed']} failed, "
        f"{summary['error']} errors, {summary['skipped']} skipped",
        TAG_SUITES: json.dumps(suites, sort_keys=True),
        TAG_METRICS: json.dumps({k: round(v, 6) for k, v in results["metrics"].items()}),
        TAG_FILES: json.dumps(uris),
        TAG_TIME: results["created"],
    }
    for key, value in tags.items():
        registry.set_version_tag(info.name, info.version, key, value)
    return uris


def version_results(tags: dict[str, str]) -> dict[str, Any] | None:
    """The test summary recorded on a model version (None if it was never tested)."""
    if TAG_STATUS not in tags:
        return None
    return {
        "status": tags[TAG_STATUS],
        "summary": tags.get(TAG_SUMMARY, ""),
        "suites": json.loads(tags.get(TAG_SUITES, "{}")),
        "metrics": json.loads(tags.get(TAG_METRICS, "{}")),
        "files": json.loads(tags.get(TAG_FILES, "[]")),
        "time": tags.get(TAG_TIME, ""),
    }
