"""``shipml audit explain``: from one prediction back to everything that made it.

prediction → model version → training run → dataset snapshots → code commit → image
→ the tests that gated the version. Each link says where it came from; a link that
is not recorded says so instead of being left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shipml.audit import open_log
from shipml.audit.database import redact
from shipml.config import ProjectConfig
from shipml.data import DatasetStore
from shipml.errors import AuditError, ShipmlError
from shipml.tracking import ModelRef, registry_for
from shipml.tracking.store import run_metrics


@dataclass
class Link:
    kind: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


def explain(config: ProjectConfig, request_id: str) -> list[Link]:
    log = open_log(config, writer=False)
    try:
        records = [r for r in log.find(request_id) if r.get("kind") == "prediction"]
    finally:
        log.close()
    if not records:
        raise AuditError(
            f"no prediction with request id {request_id!r} in {redact(config.audit.path)}",
            hint="the id is the X-Request-ID header of the answer",
        )
    rec = records[0]
    links = _prediction_links(request_id, records)
    registry = registry_for(config)
    version_link, tags = _version_link(registry, rec)
    links.append(version_link)
    links.append(_run_link(registry, rec.get("run_id")))
    links += _dataset_links(config, rec)
    commit = rec.get("git_commit")
    code = f"git commit {commit}" if commit else "no git commit recorded"
    links.append(Link("code", code, {"git_commit": commit} if commit else {}))
    links.append(_image_link(rec, tags))
    links += _test_links(tags)
    return links


def _prediction_links(request_id: str, records: list[dict[str, Any]]) -> list[Link]:
    rec = records[0]
    links = [
        Link(
            "prediction",
            f"request {request_id} at {rec.get('time')} · variant "
            f"{rec.get('variant')} · {rec.get('latency_ms')} ms",
            {"output": rec.get("output"), "seq": rec.get("seq"), "trace_id": rec.get("trace_id")},
        )
    ]
    for other in records[1:]:  # the same request answered by another variant (a shadow)
        links.append(
            Link(
                "prediction",
                f"request {request_id} also answered by variant {other.get('variant')} "
                f"({other.get('model')}/{other.get('version')}) at {other.get('time')}",
                {"output": other.get("output"), "seq": other.get("seq")},
            )
        )
    return links


def _version_link(registry: Any, rec: dict[str, Any]) -> tuple[Link, dict[str, str]]:
    """The model version's link, and its tags (empty when the registry does not know it)."""
    name, version = str(rec.get("model")), str(rec.get("version"))
    try:
        info = registry.resolve(ModelRef(name=name, version=version))
    except ShipmlError as exc:
        return Link("model version", f"{name}/{version} (not in this registry: {exc.message})"), {}
    link = Link(
        "model version",
        f"{name}/{version} · aliases "
        f"{', '.join(info.aliases) or '-'} · onnx sha256 "
        f"{rec.get('onnx_sha256')}",
        {
            "name": name,
            "version": version,
            "aliases": list(info.aliases),
            "onnx_sha256": rec.get("onnx_sha256"),
            "source": info.source,
        },
    )
    return link, info.tags


def _run_link(registry: Any, run_id: str | None) -> Link:
    if not run_id:
        return Link("training run", "not recorded (the package was made outside a run)")
    try:
        run = registry.tracker.get_run(run_id)
    except Exception as exc:  # an unknown run (a TrackingError), or a store out of reach
        return Link("training run", f"{run_id} (not in this tracking store: {type(exc).__name__})")
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run_metrics(run).items()))
    return Link(
        "training run",
        f"{run_id} ({run.info.status}) · {metrics}",
        {
            "run_id": run_id,
            "status": run.info.status,
            "metrics": run_metrics(run),
            "params": dict(run.data.params),
        },
    )


def _dataset_links(config: ProjectConfig, rec: dict[str, Any]) -> list[Link]:
    store = DatasetStore(config.artifact_root, config.root)
    links = []
    for dname, digest in (rec.get("datasets") or {}).items():
        versions = [s for s in store.versions(dname) if s.digest == digest]
        where = (
            (
                f"{dname}@{versions[0].version} · {versions[0].rows} rows · source "
                f"{versions[0].source}"
            )
            if versions
            else f"{dname} (snapshot not in this store)"
        )
        details = {"name": dname, "sha256": digest}
        if versions:
            details |= {"version": versions[0].version, "rows": versions[0].rows}
            details["source"] = versions[0].source
        links.append(Link("dataset", f"{where} · sha256 {digest}", details))
    return links


def _image_link(rec: dict[str, Any], tags: dict[str, str]) -> Link:
    # The server's own record (it ran in that image) first, else the image `shipml build
    # serve` made of this version (recorded on the version).
    image = rec.get("image_digest") or tags.get("shipml.image_digest")
    built = tags.get("shipml.image") if tags.get("shipml.image_digest") == image else None
    summary = f"{built} · {image}" if built else image
    return Link(
        "image",
        summary or "not recorded (served outside a shipml image)",
        {"name": built, "digest": image} if built else ({"digest": image} if image else {}),
    )


def _test_links(tags: dict[str, str]) -> list[Link]:
    """The tests that gated the version, and a forced promotion when there was one."""
    status = tags.get("shipml.tests.status")
    if status:
        files = json.loads(tags.get("shipml.tests.files") or "[]")
        report = next((f for f in files if f.endswith("report.html")), "")
        tested = (
            f"{status} ({tags.get('shipml.tests.summary', '')}) at "
            f"{tags.get('shipml.tests.time', '?')}" + (f" · report {report}" if report else "")
        )
    else:
        tested = "none recorded for this version (`shipml test` records them)"
    links = [Link("tests", tested, {"status": status} if status else {})]
    if tags.get("shipml.promotion.forced") == "true":
        links.append(
            Link(
                "promotion",
                f"forced by {tags.get('shipml.promotion.by')} at "
                f"{tags.get('shipml.promotion.time')}: "
                f"{tags.get('shipml.promotion.reason')}",
            )
        )
    return links
