"""A prediction's audit record: what the model received (the validated input, or the
body's digest), what it answered, and where it came from (model, run, data, code, image,
the variant a gateway attested). The answer waits until the record is committed (the
log's durability mode says how far: the OS, or the disk); docs/audit.md."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from shipml.attestation import attested_variant
from shipml.audit import AuditLog, exact
from shipml.errors import AuditError, DuplicateRecord, InferenceFailed, RequestConflict
from shipml.serving.predictor import Outputs, Predictor
from shipml.serving.validation import Rows


class PredictionRecorder:
    """Writes one record per answered prediction to ``audit``."""

    def __init__(
        self,
        audit: AuditLog,
        predictor: Predictor,
        *,
        store_inputs: bool = True,
        image_digest: str = "",
        attestation_key: bytes = b"",
    ) -> None:
        self.audit = audit
        self.store_inputs = store_inputs
        self.attestation_key = attestation_key  # believes a remote gateway's variant
        lineage = predictor.lineage
        datasets = lineage.get("datasets") or {}
        self.static = {  # the same in every record of this server: built once
            "kind": "prediction",
            "model": predictor.name,
            "version": predictor.version,
            "onnx_sha256": predictor.onnx_sha256,
            "run_id": lineage.get("run_id"),
            "datasets": {n: d.get("sha256") for n, d in datasets.items()},
            "git_commit": (lineage.get("git") or {}).get("commit"),
            "image_digest": image_digest or None,
        }

    async def record(
        self,
        scope: dict[str, Any],
        request_id: bytes,
        protocol: str,
        rows: Rows,
        raw: bytes,
        outputs: Outputs,
        started: float,
        span: Any,
    ) -> None:
        """Write the record and wait for its commit; a request id already in the log is a
        ``RequestConflict`` (409), a log that cannot write an ``InferenceFailed``."""
        if not self.store_inputs:
            model_input: Any = {"sha256": hashlib.sha256(raw).hexdigest()}
        elif rows.matrix is not None:
            model_input = {"matrix": exact(rows.matrix)}
        else:
            model_input = {"columns": {k: exact(v) for k, v in (rows.columns or {}).items()}}
        probabilities = outputs.probabilities
        record = {
            **self.static,
            "request_id": request_id.decode("latin-1"),
            "variant": attested_variant(scope, request_id, self.attestation_key),
            "protocol": protocol,
            "input": model_input,
            "output": {
                "label": exact(outputs.labels),
                "probabilities": None if probabilities is None else exact(probabilities),
            },
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "trace_id": format(span.get_span_context().trace_id, "032x") if span else None,
        }
        try:
            await self.audit.append_async(record)
        except DuplicateRecord as exc:
            raise RequestConflict(exc.message, hint="send a new X-Request-ID") from exc
        except AuditError as exc:
            raise InferenceFailed(
                f"the audit log cannot record this prediction: {exc.message}"
            ) from exc
