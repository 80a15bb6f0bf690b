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
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import TestingError
from shipml.testing.check import SUITES
from shipml.testing.report import JUNIT, REPORT, RESULTS
from shipml.testing.subject import handoff, resolve_ref
from shipml.tracking import (
    ResolvedModel,
    VersionInfo,
    parse_model_ref,
    registry_for,
    resolve_model,
)

# Model version tags written by `shipml test` (read by `shipml models show` and gates).
TAG_RECORD = "shipml.tests.record"  # JSON: suites, metrics, files, time
TAG_STATUS = "shipml.tests.status"
TAG_SUMMARY = "shipml.tests.summary"
TAG_FILES = "shipml.tests.files"
TAG_TIME = "shipml.tests.time"
TAG_MODEL_DIGEST = "shipml.model_digest"  # set when the version is registered


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
    target = output or config.tests_output  # a setting out of the project: before any work
    # Resolve NAME@ALIAS to NAME/VERSION once, before anything runs or is deleted: the
    # results belong to that version even if the alias moves while the tests run. pytest
    # is handed the resolved model, so its process need not load MLflow (about 1.5 s).
    model, aliases = pin(config, resolve_ref(config, ref))
    ref = model.ref
    out = _results_folder(target)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory(prefix="shipml-test-") as private:
        resolved = Path(private) / "model.json"
        handoff(model, aliases, resolved)
        extra = ["--shipml-resolved", str(resolved), *(extra_args or [])]
        cmd = _pytest_command(config, ref, chosen, out, against, extra)
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


def _results_folder(folder: Path) -> Path:
    """The results folder, made if missing, without the files of a previous run."""
    out = folder.resolve()
    if out.exists() and not out.is_dir():
        raise TestingError(
            f"the results folder {out} is a file",
            hint="give a folder with -o (it is created if missing)",
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in (JUNIT, REPORT, RESULTS):
        (out / name).unlink(missing_ok=True)
    return out


def _pytest_command(
    config: ProjectConfig,
    ref: str,
    chosen: list[str],
    out: Path,
    against: str | None,
    extra_args: list[str],
) -> list[str]:
    # The suite markers (-m) pick from the checks and the project's own tests.
    paths = [str(config.root / "shipml.toml")]
    paths += [str(config.path(p)) for p in config.tests.paths if config.path(p).exists()]
    return [
        sys.executable,
        "-m",
        "pytest",
        *paths,
        "-p",
        "shipml.testing.plugin",
        "-p",
        "no:cacheprovider",
        "-m",
        " or ".join(chosen),
        "--rootdir",
        str(config.root),
        f"--junitxml={out / JUNIT}",
        "-o",
        "junit_family=xunit2",
        "-o",
        "junit_suite_name=shipml",
        "-o",
        "junit_duration_report=call",
        "--shipml-model",
        ref,
        "--shipml-results",
        str(out),
        "--shipml-project",
        str(config.root),
        "--shipml-suites",
        ",".join(chosen),
        "-q",
        "-rfEs",
        "--color=no",
        *(["--shipml-against", against] if against else []),
        *extra_args,
    ]


def pin(config: ProjectConfig, ref: str) -> tuple[ResolvedModel, dict[str, str] | None]:
    """The model ``ref`` names, with its package folder, and the aliases of its name: a
    registry reference pinned to its version (``.ref`` is ``NAME/VERSION``; checked to
    exist), a folder as is (no aliases)."""
    parsed = parse_model_ref(ref)
    if parsed.path is not None:
        return resolve_model(config, parsed), None
    if parsed.name is None:
        raise TestingError(f"cannot test {ref!r}", hint="give NAME@ALIAS, NAME/VERSION or a folder")
    with warnings.catch_warnings():  # MLflow's store warns about SQLAlchemy internals
        warnings.simplefilter("ignore", DeprecationWarning)
        registry = registry_for(config)
        model = resolve_model(config, parsed, full=True, registry=registry)
        return model, registry.aliases(model.name)


def attach_results(
    config: ProjectConfig, ref: str, folder: Path, results: dict[str, Any]
) -> list[str]:
    """Log junit.xml, report.html and results.json (and this run's screenshots) to the
    model version's run under ``tests/<time>/``, and merge the results into the version's
    test record: the suites of this run replace the same suites of earlier runs."""
    parsed = parse_model_ref(ref)
    if parsed.path is not None:
        return []
    registry = registry_for(config)
    tracker = registry.tracker
    info = registry.resolve(parsed)
    tested = results.get("model") or {}
    if tested.get("version") != info.version:
        raise TestingError(
            f"the results are of version {tested.get('version')}, not of {info.ref}; they "
            "were not attached",
            hint="test a pinned version: shipml test NAME/VERSION",
        )
    if tested.get("model_digest") != info.tags.get(TAG_MODEL_DIGEST):
        raise TestingError(
            f"the results are of a model with digest {str(tested.get('model_digest'))[:12]}, "
            f"but {info.ref} is {info.tags.get(TAG_MODEL_DIGEST, 'unknown')[:12]}; they were "
            "not attached",
            hint=f"test the version's own package: shipml test {info.ref}",
        )
    if not info.run_id:
        return []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    artifact_path = f"tests/{stamp}"
    files = [folder / n for n in (JUNIT, REPORT, RESULTS)]
    for file in files:
        if file.is_file():
            tracker.client.log_artifact(info.run_id, str(file), artifact_path)
    shots = {str(a) for t in results["tests"] for a in t.get("attachments", [])}
    for shot in sorted(shots):
        if Path(shot).is_file():
            tracker.client.log_artifact(info.run_id, shot, f"{artifact_path}/attachments")
    base = f"{tracker.artifact_uri(info.run_id)}/{artifact_path}"
    uris = [f"{base}/{f.name}" for f in files if f.is_file()]
    record = merge_record(version_results(info.tags), results, uris)
    tags = {
        TAG_RECORD: json.dumps(record, sort_keys=True),  # what gates read, in one write
        TAG_STATUS: record["status"],
        TAG_SUMMARY: _summary(results["summary"]),
        TAG_FILES: json.dumps(uris),
        TAG_TIME: results["created"],
    }
    for key, value in tags.items():
        registry.set_version_tag(info.name, info.version, key, value)
    return uris


def merge_record(
    before: dict[str, Any] | None, results: dict[str, Any], uris: list[str]
) -> dict[str, Any]:
    """The version's test record after this run: per suite, the latest status and time;
    metrics of the suites that ran now replace theirs. The record names the model digest
    it is of; an earlier record of another digest is not merged."""
    model = results.get("model") or {}
    if before is not None and before.get("model_digest") != model.get("model_digest"):
        before = None
    suites = dict((before or {}).get("suites", {}))
    times = dict((before or {}).get("suite_times", {}))
    metrics = dict((before or {}).get("metrics", {}))
    for suite, counts in results["suites"].items():
        suites[suite] = counts["status"]
        times[suite] = results["created"]
        metrics = {k: v for k, v in metrics.items() if not k.startswith(suite + ".")}
    # A metric that is null in results.json (NaN or infinite) was not measured.
    metrics.update({k: round(float(v), 6) for k, v in results["metrics"].items() if v is not None})
    status = (
        "failed"
        if "failed" in suites.values()
        else "passed"
        if "passed" in suites.values()
        else "skipped"
    )
    return {
        "model_digest": model.get("model_digest"),
        "version": model.get("version"),
        "status": status,
        "suites": suites,
        "suite_times": times,
        "metrics": metrics,
        "files": uris,
        "time": results["created"],
        "summary": f"{_summary(results['summary'])} (latest run: "
        f"{', '.join(results['suites']) or 'nothing'})",
    }


def _summary(s: dict[str, Any]) -> str:
    return (
        f"{s['passed']} passed, {s['failed']} failed, {s['error']} errors, {s['skipped']} skipped"
    )


def version_results(tags: dict[str, str]) -> dict[str, Any] | None:
    """The test record of a model version (None if it was never tested, or if the tag is
    not a record ``shipml test`` writes: gates, ``models show`` and reports read it)."""
    raw = tags.get(TAG_RECORD)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if _well_formed(record) else None


def _well_formed(record: Any) -> bool:
    """A record's shape: suites name -> status, metrics name -> number, texts are texts."""
    if not isinstance(record, dict):
        return False
    suites, metrics = record.get("suites"), record.get("metrics")
    return (
        isinstance(suites, dict)
        and all(isinstance(v, str) for v in suites.values())
        and isinstance(metrics, dict)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values())
        and all(isinstance(record.get(k, ""), str) for k in ("status", "summary", "time"))
        and isinstance(record.get("files", []), list)
    )


def record_of(version: VersionInfo) -> tuple[dict[str, Any] | None, str]:
    """The test record of ``version`` if it is of this version's model (its digest), else
    None and why it cannot vouch for it: a record copied from another version, edited, or
    written before records named their model."""
    if not version.tags.get(TAG_RECORD):
        return None, "never tested"
    record = version_results(version.tags)
    if record is None:
        return None, "its test record is unreadable"
    digest = version.tags.get(TAG_MODEL_DIGEST)
    if not digest or record.get("model_digest") != digest:
        seen = str(record.get("model_digest") or "none")[:12]
        return None, (
            f"its test record is of model digest {seen}, not of this version's "
            f"{(digest or 'unknown')[:12]}"
        )
    return record, ""
