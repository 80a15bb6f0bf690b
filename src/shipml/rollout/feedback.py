"""``POST /v1/feedback``: ground-truth labels, joined to the predictions by request id.

Labels decide canaries, so they must not be forged: the endpoint needs a bearer token
(``[rollout] feedback_token``; the admin token works too), and a label counts only for a
request id this gateway answered, once per id, within ``[rollout] feedback_window_s``.
The body is bounded (``[rollout] max_body_bytes``, and at most ``MAX_LABELS`` labels);
a label is a string, a finite number or a boolean, or a list of them (one per row of the
request). Each label that counts is written to the audit log (``kind: feedback``), where
the monitor joins it to its prediction.
"""

from __future__ import annotations

import hmac
import math
from collections import Counter
from typing import Any

import orjson

from shipml.errors import ConfigError
from shipml.rollout.analysis import EXPIRED, MATCHED, MAX_LABEL_CHARS, Analysis
from shipml.rollout.routing import MAX_REQUEST_ID, Refused, preview

MAX_LABELS = 10_000
SHAPE = 'expected {"request_id": "...", "label": ...} or a list of them'


def authorize(given: bytes | None, tokens: list[str], what: str, setting: str) -> None:
    """Refuse unless ``given`` (a bearer token) is one of ``tokens``: 403 when no token
    is configured (the endpoint is off), 401 when it is missing or wrong."""
    configured = [t.encode() for t in tokens if t]
    if not configured:
        raise Refused(
            403,
            f"{what} is off: no token is configured ({setting})",
            hint="set it in shipml.toml or its SHIPML_ROLLOUT_* environment variable",
        )
    # Compare with every token (no early exit): the time does not say which one is close.
    matched = [hmac.compare_digest(given or b"", token) for token in configured]
    if given is None or not any(matched):
        raise Refused(401, f"{what} needs a valid token: Authorization: Bearer TOKEN")


def check_tokens(**tokens: str) -> None:
    """A configured token a client can send: ``Bearer`` is read without the whitespace
    around it, so a token with some (a secret file's newline) would never match."""
    for name, token in tokens.items():
        if token != token.strip() or not token.isprintable():
            raise ConfigError(
                f"[rollout] {name} has whitespace around it or characters that are not "
                f"printable ({len(token)} characters): no client could send it",
                hint="remove the newline or spaces around the token",
            )


def parse_labels(raw: bytes) -> list[tuple[str, Any]]:
    """(request id, label) pairs from a feedback body, or a 400 naming the bad item."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"malformed JSON: {str(exc)[:120]}") from exc
    items = data if isinstance(data, list) else [data]
    if not items:
        raise Refused(400, f"no labels: {SHAPE}")
    if len(items) > MAX_LABELS:
        raise Refused(
            400, f"{len(items):,} labels in one request; at most {MAX_LABELS:,}", hint="split it"
        )
    pairs = []
    for i, item in enumerate(items):
        where = f"item {i}: " if isinstance(data, list) else ""
        if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
            raise Refused(400, f"{where}{SHAPE}")
        rid, label = item["request_id"], item["label"]
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        if not isinstance(rid, str) or not 0 < len(rid) <= MAX_REQUEST_ID:
            shown = preview(rid) if isinstance(rid, str) else type(rid).__name__
            raise Refused(
                400,
                f"{where}request_id must be a string of 1 to {MAX_REQUEST_ID} characters, "
                f"got {shown}",
            )
        pairs.append((rid, _label(label, where)))
    return pairs


def _label(label: Any, where: str) -> Any:
    if isinstance(label, list) and 0 < len(label) <= MAX_LABELS:  # one label per row
        values = [_scalar(v, where) for v in label]
        return values[0] if len(values) == 1 else values
    return _scalar(label, where)


def _scalar(label: Any, where: str) -> Any:
    if isinstance(label, str):
        if len(label) > MAX_LABEL_CHARS:
            raise Refused(
                400, f"{where}label longer than {MAX_LABEL_CHARS} characters: {preview(label)}"
            )
        return label
    if isinstance(label, bool | int):
        return label
    if isinstance(label, float) and math.isfinite(label):
        return label
    shown = type(label).__name__ if not isinstance(label, float) else str(label)
    raise Refused(400, f"{where}label must be a string, a finite number or a boolean, got {shown}")


def apply(
    analysis: Analysis, pairs: list[tuple[str, Any]], counts: Counter[str]
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Count the labels: the answer (how many matched, why the others did not) and the
    labels to record (the first label of an answer this gateway gave, late or not)."""
    outcomes: Counter[str] = Counter()
    kept = []
    for rid, label in pairs:
        outcome = analysis.feedback(rid, label)
        outcomes[outcome] += 1
        if outcome in (MATCHED, EXPIRED):
            kept.append((rid, label))
    counts.update(outcomes)
    refused = {k: v for k, v in sorted(outcomes.items()) if k != MATCHED}
    return {"received": len(pairs), "matched": outcomes[MATCHED], "unmatched": refused}, kept
