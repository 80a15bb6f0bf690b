"""What ``shipml dashboard`` shows, gathered from the project: registered models, their
versions and aliases, each version's lineage, test record and gates, the gateway's
rollout state, the latest monitoring pass (drift per feature, quality over time) and
the most recent predictions with the audit log's verdict.

Plain data (a dict), gathered per page view; the page is ``shipml.report.dashboard``.
The dashboard process gathers through ``gatherer``, whose ``audit.watch.LogWatch`` keeps
the audit log's last verified state in memory: a view checks only what was appended
since (a whole verification when that cannot be shown to extend it, and every 10
minutes one in a thread beside the views), not the whole log.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shipml.config import ProjectConfig
from shipml.errors import ShipmlError

if TYPE_CHECKING:
    from shipml.audit.watch import LogWatch

RECENT = 20


def gatherer(config: ProjectConfig) -> Callable[[], dict[str, Any]]:
    """The overview of one dashboard process, view after view: the audit log's verdict
    goes on from the last one (``LogWatch``) instead of reading the whole log."""
    from shipml.audit.watch import LogWatch

    watch = LogWatch(config)
    return lambda: overview(config, watch=watch)


def overview(config: ProjectConfig, *, watch: LogWatch | None = None) -> dict[str, Any]:
    return {
        "project": config.project.name,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": _models(config),
        "rollout": _rollout(config),
        "monitor": _monitor(config),
        "predictions": _predictions(config, watch),
    }


def _models(config: ProjectConfig) -> list[dict[str, Any]]:
    from shipml.testing.gates import evaluate
    from shipml.testing.runner import version_results
    from shipml.tracking import registry_for

    try:
        registry = registry_for(config)
        names = registry.model_names()
    except ShipmlError as exc:
        return [{"name": config.model_name, "error": exc.message, "versions": []}]
    models: list[dict[str, Any]] = []
    for name in names:
        try:  # one model the store cannot read (registered by anyone) is said, alone
            versions = sorted(registry.versions(name), key=lambda v: int(v.version), reverse=True)
            aliases = registry.aliases(name)
        except ShipmlError as exc:
            models.append({"name": name, "aliases": {}, "error": exc.message, "versions": []})
            continue
        champion = next((v for v in versions if aliases.get("champion") == v.version), None)
        rows = []
        for v in versions[:10]:
            record = version_results(v.tags) or {}
            try:
                gates = [g.__dict__ for g in evaluate(config, v, champion)]
            except ShipmlError as exc:
                gates = [{"name": "gates", "holds": False, "value": exc.message, "bound": ""}]
            rows.append(
                {
                    "version": v.version,
                    "aliases": v.aliases,
                    "created": datetime.fromtimestamp(v.created / 1000, UTC).isoformat(
                        timespec="seconds"
                    )
                    if v.created
                    else "",
                    "run_id": v.run_id,
                    "datasets": _datasets(v.tags),
                    "commit": v.tags.get("shipml.git_commit", ""),
                    "tests": record.get("status", "never tested"),
                    "tests_summary": record.get("summary", ""),
                    "metrics": record.get("metrics", {}),
                    "gates": gates,
                    "monitor": v.tags.get("shipml.monitor.status", "not monitored"),
                    "monitor_summary": v.tags.get("shipml.monitor.summary", ""),
                }
            )
        models.append({"name": name, "aliases": aliases, "versions": rows})
    return models


def _datasets(tags: dict[str, str]) -> str:
    prefix, suffix = "shipml.dataset.", ".sha256"
    found = [
        f"{k[len(prefix) : -len(suffix)]} sha256 {v[:12]}"
        for k, v in sorted(tags.items())
        if k.startswith(prefix) and k.endswith(suffix)
    ]
    return ", ".join(found)


def _rollout(config: ProjectConfig) -> dict[str, Any]:
    """The gateway's ``/v1/rollout``, if one answers at ``[rollout] host:port``."""
    url = f"http://{config.rollout.host}:{config.rollout.port}/v1/rollout"
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            state = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        return {"url": url, "error": f"no gateway answers ({type(exc).__name__})"}
    return {"url": url, **state} if isinstance(state, dict) else {"url": url, "error": "bad answer"}


def _monitor(config: ProjectConfig) -> dict[str, Any] | None:
    """The latest ``shipml monitor`` pass (``[monitor] output``/monitor.json)."""
    file = config.path(config.monitor.output) / "monitor.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "drift" in data else None


def _predictions(config: ProjectConfig, watch: LogWatch | None = None) -> dict[str, Any]:
    """The newest predictions in the audit log, and whether the log verifies (all of it,
    or through ``watch`` what changed since its last verdict)."""
    from shipml.audit import open_log, verify_project

    if not config.audit.enabled:
        return {"error": "the audit log is off ([audit] enabled = false)", "rows": []}
    try:
        log = open_log(config, writer=False)
    except ShipmlError as exc:
        return {"error": exc.message, "rows": []}
    try:
        rows = []
        for record in log.scan("prediction", newest_first=True):
            label = (record.get("output") or {}).get("label")
            rows.append(
                {
                    "seq": record.get("seq"),
                    "time": str(record.get("time", ""))[:19],
                    "request_id": record.get("request_id"),
                    "model": f"{record.get('model')}/{record.get('version')}",
                    "variant": record.get("variant"),
                    "label": label[0] if isinstance(label, list) and len(label) == 1 else label,
                    "latency_ms": record.get("latency_ms"),
                }
            )
            if len(rows) >= RECENT:
                break
        # `shipml audit verify`'s verdict: against the pinned key, not whichever signed it
        checked = watch.verify() if watch is not None else verify_project(config)
        status = {"ok": checked.ok, "records": checked.records, "problem": checked.problem}
    except ShipmlError as exc:
        return {"error": exc.message, "rows": []}
    finally:
        log.close()
    return {"rows": rows, "verified": status}
