"""The one promotion rule: a protected alias (``[gates] protect``, by default
``champion``) moves only through ``promote``.

``promote`` evaluates the ``[gates]`` on the candidate (test results recorded on the
version, bounds relative to the current champion), refuses with ``GateFailed`` when one
does not hold, accepts an override only with ``force`` and a reason, writes the audit
event *before* the alias moves, moves it, and leaves who, when and why on the version's
tags. Every path calls it: ``shipml promote``, ``shipml models alias``, ``shipml run
--alias``, the gateway's canary and ``shipml rollout promote`` / ``rollback``. Nothing
else may import ``shipml.tracking.protected`` (an import-linter contract), and
``Registry.set_alias`` refuses protected aliases.

A rollback of the gateway restores the previous champion through the same function
(``restoring``): without the gates, but only when the registry shows that the alias
still points at the version that replaced it, and that this version's promotion
recorded it as the one before.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shipml.audit import record_event
from shipml.config import ProjectConfig
from shipml.errors import GateFailed, TestingError
from shipml.testing.gates import Gate, evaluate
from shipml.tracking import (
    ModelRef,
    Registry,
    VersionInfo,
    check_alias,
    parse_model_ref,
    registry_for,
)
from shipml.tracking.protected import move_protected_alias

TAG = "shipml.promotion."


@dataclass
class Promotion:
    model: str
    version: str
    alias: str
    previous: str | None
    gates: list[Gate] = field(default_factory=list)
    forced: bool = False
    reason: str = ""
    moved: bool = False

    @property
    def unmet(self) -> list[Gate]:
        return [g for g in self.gates if not g.holds]

    @property
    def summary(self) -> str:
        """``NAME@ALIAS -> version V`` (what the registry says now)."""
        return f"{self.model}@{self.alias} -> version {self.version}"


def check(
    config: ProjectConfig, ref: str, *, alias: str = "champion", registry: Registry | None = None
) -> Promotion:
    """The gates of promoting ``ref`` to ``alias``, evaluated; nothing moves."""
    registry = registry or registry_for(config)
    candidate, previous, champion = _parties(registry, ref, alias)
    result = Promotion(candidate.name, candidate.version, alias, previous)
    result.gates = evaluate(config, candidate, champion)
    return result


def promote(
    config: ProjectConfig,
    ref: str,
    *,
    alias: str = "champion",
    force: bool = False,
    reason: str = "",
    by: str | None = None,
    restoring: str | None = None,
) -> Promotion:
    """Move ``alias`` to the version ``ref`` names if every gate holds (or when forced
    with a reason). Raises ``GateFailed`` listing the unmet gates otherwise.

    ``restoring`` (a rollback): the version the alias must point at now, which ``ref``
    replaced; the gates are then the registry's record of that replacement."""
    if force and not reason.strip():
        raise TestingError(
            "--force needs --reason: an override is recorded with who, when and why",
            hint='e.g. --force --reason "hotfix for incident 42, approved by A. Lee"',
        )
    check_alias(alias)  # before anything is recorded: the audit log holds only real moves
    registry = registry_for(config)
    candidate, previous, champion = _parties(registry, ref, alias)
    result = Promotion(candidate.name, candidate.version, alias, previous)
    if restoring is not None:
        result.gates = [_restores(candidate, champion, restoring, alias)]
    else:
        result.gates = evaluate(config, candidate, champion)
    if previous == candidate.version:
        return result  # already there: nothing moves, nothing to record
    if result.unmet and not force:
        listed = "; ".join(f"{g.name}: {g.value} (needs {g.bound})" for g in result.unmet)
        exc = GateFailed(
            f"{candidate.ref} was not promoted to {alias}: {len(result.unmet)} gate(s) do not "
            f"hold: {listed}",
            hint="fix the model and re-run `shipml test`, or override with "
            '--force --reason "why" (recorded in the audit log)',
        )
        exc.details["gates"] = result.gates
        raise exc
    result.forced, result.reason = bool(result.unmet and force), reason
    if result.forced and not config.audit.enabled:
        raise TestingError(
            "an override must be recorded, but the audit log is off ([audit] enabled = false)",
            hint="turn the audit log on, or fix the model so that every gate holds",
        )
    _move(config, registry, result, by or getpass.getuser(), rollback=restoring is not None)
    return result


def _parties(
    registry: Registry, ref: str, alias: str
) -> tuple[VersionInfo, str | None, VersionInfo | None]:
    """(the candidate, the version the alias points at now, that version's record)."""
    parsed = parse_model_ref(ref)
    if parsed.name is None:
        raise TestingError(
            f"promote takes a registered model (NAME@ALIAS or NAME/VERSION), not {ref!r}",
            hint="register the package with `shipml run` first",
        )
    candidate = registry.resolve(parsed)
    previous = registry.aliases(candidate.name).get(alias)
    champion = (
        registry.resolve(ModelRef(name=candidate.name, version=previous)) if previous else None
    )
    return candidate, previous, champion


def _restores(
    candidate: VersionInfo, current: VersionInfo | None, restoring: str, alias: str
) -> Gate:
    """The gate of a rollback: the alias still points at ``restoring``, whose promotion
    replaced ``candidate``."""
    name = f"restores the {alias} that {candidate.name}/{restoring} replaced"
    if current is None or current.version != restoring:
        now = current.version if current else "nothing"
        return Gate(name, False, f"{alias} is version {now}", f"version {restoring}")
    before = current.tags.get(TAG + "previous", "")
    return Gate(
        name, before == candidate.version, f"replaced version {before or '-'}", candidate.version
    )


def _move(
    config: ProjectConfig, registry: Registry, result: Promotion, by: str, *, rollback: bool
) -> None:
    """Record, then move, then tag: a move is never unrecorded."""
    unmet = [f"{g.name}: {g.value} (needs {g.bound})" for g in result.unmet]
    record_event(
        config,
        {
            "event": "rollback" if rollback else "promotion",
            "model": result.model,
            "alias": result.alias,
            "version": result.version,
            "previous_version": result.previous,
            "by": by,
            "forced": result.forced,
            "reason": result.reason,
            "unmet_gates": unmet,
            "gates": [g.name for g in result.gates if g.holds],
        },
    )
    if result.alias in registry.protected:
        move_protected_alias(registry, result.model, result.version, result.alias)
    else:
        registry.set_alias(result.model, result.version, result.alias)
    result.moved = True
    tags = {
        "by": by,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "alias": result.alias,
    }
    stale = ["forced", "reason", "unmet_gates"]
    if rollback:  # a restored version vouches for no other: no rollback of a rollback
        stale.append("previous")
    else:
        tags["previous"] = result.previous or ""
    if result.forced:
        tags |= {"forced": "true", "reason": result.reason, "unmet_gates": "; ".join(unmet)[:4000]}
        stale = [k for k in stale if k not in tags]
    for key in stale:  # a promotion on merit replaces an earlier override's record
        registry.delete_version_tag(result.model, result.version, TAG + key)
    for key, value in tags.items():
        registry.set_version_tag(result.model, result.version, TAG + key, value)


@dataclass
class AliasMove:
    """What ``set_alias`` did: a protected alias went through ``promote`` (``promotion``)."""

    model: str
    alias: str
    version: str
    previous: str | None
    promotion: Promotion | None = None
    ignored_override: bool = False  # --force/--reason on an unprotected alias


def set_alias(
    config: ProjectConfig,
    name: str,
    version: str,
    alias: str,
    *,
    force: bool = False,
    reason: str = "",
) -> AliasMove:
    """``shipml models alias``: point ``alias`` of ``name`` at ``version``; a protected
    alias goes through ``promote`` (gates, ``force`` with a reason)."""
    if alias in config.gates.protect:
        done = promote(config, f"{name}/{version}", alias=alias, force=force, reason=reason)
        return AliasMove(name, alias, done.version, done.previous, promotion=done)
    registry = registry_for(config)
    before = registry.aliases(name).get(alias)
    info = registry.set_alias(name, version, alias)
    record_event(
        config,
        {
            "event": "alias",
            "model": name,
            "alias": alias,
            "version": info.version,
            "previous_version": before,
            "by": getpass.getuser(),
        },
    )
    return AliasMove(name, alias, info.version, before, ignored_override=force or bool(reason))
