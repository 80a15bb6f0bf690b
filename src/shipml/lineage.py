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
    registry = registry_for(config)
    name, version = str(rec.get("model")), str(rec.get("version"))
    try:
        info = registry.resolve(ModelRef(name=name, version=version))
        links.append(
            Link(
                "model version",
                f"{name}/{version} · aliases "
                f"{', '.join(info.aliases) or '-'} · onnx sha256 "
                f"{rec.get('onnx_sha256')}",
                {"source": info.source},
            )
        )
        tags = info.tags
    except ShipmlError as exc:
        links.append(
            Link("model version", f"{name}/{version} (not in this registry: {exc.message})")
        )
        tags = {}
    run_id = rec.get("run_id")
    if run_id:
        try:
            run = registry.tracker.get_run(run_id)
        except Exception as exc:  # an unknown run (a TrackingError), or a store out of reach
            links.append(
                Link("training run", f"{run_id} (not in this tracking store: {type(exc).__name__})")
            )
        else:
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.data.metrics.items()))
            links.append(
                Link(
                    "training run",
                    f"{run_id} ({run.info.status}) · {metrics}",
                    {"params": dict(run.data.params)},
                )
            )
    else:
        links.append(Link("training run", "not recorded (the package was made outside a run)"))
    store = DatasetStore(config.artifact_root, config.root)
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
        links.append(Link("dataset", f"{where} · sha256 {digest}"))
    commit = rec.get("git_commit")
    links.append(Link("code", f"git commit {commit}" if commit else "no git commit recorded"))
    # The server's own record (it ran in that image) first, else the image `shipml build
    # serve` made of this version (recorded on the version).
    image = rec.get("image_digest") or tags.get("shipml.image_digest")
    built = tags.get("shipml.image") if tags.get("shipml.image_digest") == image else None
    summary = f"{built} · {image}" if built else image
    links.append(
        Link(
            "image",
            summary or "not recorded (served outside a shipml image)",
            {"name": built} if built else {},
        )
    )
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
    links.append(Link("tests", tested))
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
