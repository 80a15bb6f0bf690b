"""``POST /v1/rollout/promote`` and ``/v1/rollout/rollback``: steering by hand.

Both need ``Authorization: Bearer TOKEN`` (``[rollout] admin_token``; none configured:
the endpoints are off). A manual promotion passes the online gate (enough labels, an
accuracy no worse than the champion's) *and* the challenger's offline gates; with
``X-Shipml-Force: WHO: REASON`` it overrides them, recorded as a ``manual override``
event and, in the registry, as a forced promotion with that reason.
"""

from __future__ import annotations

from urllib.parse import unquote

from shipml.errors import GateFailed
from shipml.rollout.analysis import Analysis
from shipml.rollout.canary import online_gate
from shipml.rollout.routing import Refused, preview
from shipml.rollout.traffic import PROMOTED, Traffic

MAX_REASON = 1000
BY = "shipml gateway (admin)"


def forced(headers: dict[bytes, bytes]) -> str | None:
    """The override's ``WHO: REASON`` from ``X-Shipml-Force`` (URL-quoted), if any."""
    raw = headers.get(b"x-shipml-force")
    if raw is None:
        return None
    text = unquote(raw.decode("latin-1")).strip()
    if len(text) > MAX_REASON:
        raise Refused(400, f"X-Shipml-Force is longer than {MAX_REASON} characters")
    _, sep, why = text.partition(":")
    if not text or (sep and not why.strip()):
        raise Refused(
            400,
            f"X-Shipml-Force needs a reason, got {preview(text)}",
            hint="shipml rollout promote --force --reason TEXT",
        )
    return text


def promote(traffic: Traffic, analysis: Analysis, force: str | None) -> None:
    """A manual promotion (blocking: the gatekeeper reads the registry)."""
    with traffic.deciding:  # no canary decision in between
        _promote(traffic, analysis, force)


def _promote(traffic: Traffic, analysis: Analysis, force: str | None) -> None:
    if traffic.state == PROMOTED:  # again (a retry): it would bring the old champion back
        raise Refused(
            409,
            f"nothing to promote: {traffic.policy.champion.name} was promoted already",
            hint="roll back with `shipml rollout rollback`, or start a new rollout",
        )
    online = online_gate(traffic, analysis)
    refusals = [r for r in (online, traffic.gatekeeper.check(traffic.policy.challengers[0])) if r]
    if refusals and not force:
        raise Refused(
            409,
            f"promotion refused: {'; '.join(refusals)}",
            hint="send X-Shipml-Force: REASON to override",
        )
    by = f"{BY}: {force.partition(':')[0]}" if force else BY
    if refusals:
        traffic.event("manual override", reason=force, refused_because="; ".join(refusals), by=by)
    reason = f"manual override: {force}" if refusals else "manual"
    try:
        traffic.promote(reason, by=by, force=bool(refusals))
    except GateFailed as exc:
        raise Refused(409, f"promotion refused: {exc.message}", hint=exc.hint) from exc


def rollback(traffic: Traffic) -> None:
    traffic.rollback("manual", by=BY)
