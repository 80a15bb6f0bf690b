"""``shipml monitor``: one monitoring pass of a model version, its report attached to the
version, and — on a breach, when asked — the retraining loop (continuous training):
snapshot the dataset source again, run the pipeline as ``challenger``, test it, and let
the gates decide the promotion. Every step is written to the audit log.

This is orchestration over several layers (registry, audit log, monitor, report,
pipeline, testing), so it lives in the session layer the CLI calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipml.audit import open_log, record_event
from shipml.config import ProjectConfig
from shipml.errors import ConfigError, GateFailed, ShipmlError
from shipml.files import replacing_folder
from shipml.model import ModelPackage
from shipml.monitor import MonitorResult, WindowSpec, monitor_rows, parse_period
from shipml.monitor.records import audit_batches, file_batches, since_time
from shipml.report.monitor import REPORT
from shipml.report.monitor import render as render_report

RESULT = "monitor.json"
Say = Callable[[str], None]


@dataclass
class Target:
    """The model version monitored: its package and, when registered, its registry entry."""

    name: str
    version: str
    package: ModelPackage
    info: Any = None  # VersionInfo, or None for a package folder

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass
class Retraining:
    snapshot: str = ""
    run_id: str = ""
    version: str | None = None
    created: bool = False
    tests: str = ""
    decision: str = ""  # promoted | refused | unchanged | failed
    reason: str = ""
    gates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MonitorRun:
    target: Target
    result: MonitorResult
    folder: Path
    attached: list[str] = field(default_factory=list)
    retraining: Retraining | None = None

    @property
    def files(self) -> list[Path]:
        return [self.folder / RESULT, self.folder / REPORT]


def resolve_target(config: ProjectConfig, ref: str | None) -> Target:
    """``ref``, ``[monitor] ref``, else ``<model>@champion``: a registry entry or a folder."""
    from shipml.tracking import resolve_model

    chosen = ref or config.monitor.ref or f"{config.model_name}@champion"
    model = resolve_model(config, chosen, full=True)
    return Target(model.name, model.version, ModelPackage.load(model.path), model.info)


def run_monitor(
    config: ProjectConfig,
    ref: str | None = None,
    *,
    since: str | None = None,
    last: int | None = None,
    window: str | None = None,
    data: Path | None = None,
    output: Path | None = None,
    on_breach: str | None = None,
    attach: bool = True,
    say: Say | None = None,
) -> MonitorRun:
    """Monitor a model version over a period of the audit log (or the rows of ``data``),
    write ``monitor.json`` and ``monitor.html``, attach them to the version, and on a
    breach retrain when ``on_breach`` (or ``[monitor] on_breach``) is ``retrain``."""
    say = say or (lambda _: None)
    section = config.monitor
    action = on_breach or section.on_breach
    if action not in ("fail", "retrain"):
        raise ConfigError(f"--on-breach expects fail or retrain, got {action[:40]!r}")
    spec = WindowSpec.parse(window if window is not None else section.window)
    target = resolve_target(config, ref)
    slices = list(config.tests.model.slices)
    source, batches = _batches(config, target, data, since, last)
    say(f"monitoring {target.ref} from {source}")
    result = monitor_rows(
        target.package,
        batches,
        model=target.name,
        version=target.version,
        source=source,
        settings=section,
        window=spec,
        slices=slices,
    )
    folder = write_result(result, output or config.monitor_output)
    run = MonitorRun(target, result, folder)
    if config.audit.enabled:
        record_event(config, _event(result))
    if attach and target.info is not None:
        run.attached = attach_result(config, target, folder, result)
    if result.breached and action == "retrain":
        run.retraining = retrain(config, target, result, say=say)
    return run


def _batches(
    config: ProjectConfig, target: Target, data: Path | None, since: str | None, last: int | None
) -> tuple[str, Any]:
    """Where the rows come from (said to the user) and the batches read from there: the
    file ``data``, else the audit log over ``since`` or the ``last`` rows."""
    section = config.monitor
    if data is not None:
        return f"file {data}", file_batches(data, target.package)
    if not config.audit.enabled:
        raise ConfigError(
            "shipml monitor reads predictions from the audit log, and it is off "
            "([audit] enabled = false)",
            hint="turn the audit log on, or give a file of inputs with --data",
        )
    period = parse_period(since or section.since) if last is None or since else None
    source = "the audit log" + (
        f", last {last} rows" if last else f", since {since or section.since}"
    )
    log = open_log(config, writer=False)
    batches = audit_batches(
        log, target.package, target.name, target.version, since=since_time(period), last=last
    )
    return source, batches


def _event(result: MonitorResult) -> dict[str, Any]:
    return {
        "event": "monitor",
        "model": result.model,
        "version": result.version,
        "rows": result.rows,
        "breached": result.breached,
        "breaches": result.breaches,
        "drifted_features": result.drift.drifted,
        "labelled": result.quality["labelled"],
    }


def write_result(result: MonitorResult, folder: Path) -> Path:
    """``monitor.json`` and ``monitor.html`` into ``folder``, both or neither."""
    data = result.to_dict()
    html = render_report(data)
    folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"the monitor output {folder} is a file", hint="give a folder with -o")
    with replacing_folder(folder, prefix=".monitor-") as tmp:
        (tmp / RESULT).write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))
        (tmp / REPORT).write_text(html, encoding="utf-8")
    return folder


def attach_result(
    config: ProjectConfig, target: Target, folder: Path, result: MonitorResult
) -> list[str]:
    """Log both files to the version's run under ``monitor/<time>/``; tag the version with
    the verdict."""
    from shipml.tracking import Registry, tracker_for

    info = target.info
    if not info.run_id:
        return []
    tracker = tracker_for(config)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = f"monitor/{stamp}"
    for name in (RESULT, REPORT):
        tracker.client.log_artifact(info.run_id, str(folder / name), path)
    uris = [f"{tracker.artifact_uri(info.run_id)}/{path}/{n}" for n in (RESULT, REPORT)]
    registry = Registry(tracker)
    tags = {
        "shipml.monitor.status": "breach" if result.breached else "ok",
        "shipml.monitor.time": result.created,
        "shipml.monitor.summary": ("; ".join(result.breaches) or f"{result.rows} rows, no breach")[
            :4000
        ],
        "shipml.monitor.files": json.dumps(uris),
    }
    for key, value in tags.items():
        registry.set_version_tag(info.name, info.version, key, value)
    return uris


def retrain(
    config: ProjectConfig, target: Target, result: MonitorResult, *, say: Say
) -> Retraining:
    """Continuous training after a breach: snapshot, run as challenger, test, gates."""
    from shipml.data import DatasetStore
    from shipml.pipeline import run_pipeline

    out = Retraining()
    event = {"model": target.name, "version": target.version, "breaches": result.breaches}
    record_event(config, {"event": "retrain started", **event})
    try:
        name = _dataset(config)
        snap = DatasetStore(config.artifact_root, config.root).add(
            name, config.datasets[name].source, description=config.datasets[name].description
        )
        out.snapshot = snap.ref
        record_event(
            config, {"event": "retrain snapshot", "dataset": snap.ref, "sha256": snap.digest}
        )
        say(f"snapshot {snap.ref} ({snap.rows} rows, sha256 {snap.digest[:12]})")
        run = run_pipeline(config, alias="challenger")
        out.run_id = run.run_id
        mv = run.model_version
        out.version, out.created = (mv.version if mv else None), run.model_created
        record_event(
            config,
            {
                "event": "retrain run",
                "run_id": run.run_id,
                "model": target.name,
                "version": out.version,
                "new_version": run.model_created,
            },
        )
        say(f"run {run.run_id}: {target.name}/{out.version} as challenger")
        if mv is None or not run.model_created:
            out.decision, out.reason = "unchanged", "the pipeline made no new model version"
        else:
            _test_and_promote(config, f"{mv.name}/{mv.version}", out, say)
    except ShipmlError as exc:
        out.decision, out.reason = "failed", exc.message
    record_event(
        config,
        {
            "event": "retrain decision",
            "model": target.name,
            "challenger": out.version,
            "decision": out.decision,
            "reason": out.reason,
            "tests": out.tests,
            "unmet_gates": [g["name"] for g in out.gates if not g["holds"]],
        },
    )
    return out


def _test_and_promote(config: ProjectConfig, ref: str, out: Retraining, say: Say) -> None:
    from shipml.project.promotion import promote
    from shipml.testing.runner import run_tests

    tests = run_tests(config, ref, output=config.tests_output / "retrain")
    out.tests = tests.results["summary"]["status"]
    record_event(
        config,
        {"event": "retrain tests", "ref": ref, "status": out.tests, "files": tests.attached},
    )
    say(f"tests of {ref}: {out.tests}")
    try:
        promotion = promote(config, ref)
    except GateFailed as exc:
        out.decision, out.reason = "refused", exc.message
        out.gates = [g.__dict__ for g in exc.details.get("gates", [])]
        return
    out.gates = [g.__dict__ for g in promotion.gates]
    out.decision = "promoted" if promotion.moved else "unchanged"
    out.reason = (
        f"every gate holds; champion is now {ref}" if promotion.moved else "already champion"
    )


def _dataset(config: ProjectConfig) -> str:
    name = config.monitor.dataset
    if name:
        if name not in config.datasets:
            raise ConfigError(
                f"[monitor] dataset {name!r} is not a [datasets] entry",
                hint=f"choose from: {', '.join(config.datasets) or 'none configured'}",
            )
        return name
    if len(config.datasets) != 1:
        raise ConfigError(
            f"retraining needs to know which dataset to snapshot; shipml.toml has "
            f"{len(config.datasets)} [datasets] entries",
            hint="set [monitor] dataset = NAME",
        )
    return next(iter(config.datasets))
