"""Promotion gates: what a model version must show before it becomes champion.

``[gates]`` in shipml.toml names the suites whose every test must have passed and
bounds on the metrics ``shipml test`` recorded on the version (``suite.metric``). A
bound is a number or relative to the current champion: ``"champion - 0.005"``.
``promote`` moves the alias only when every gate holds; ``force`` with a reason
overrides and records who, when and why (audit log and version tags).
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipml.audit import record_event
from shipml.config import ProjectConfig
from shipml.errors import GateFailed, TestingError
from shipml.testing.runner import version_results
from shipml.tracking import Registry, VersionInfo, parse_model_ref, tracker_for

RELATIVE = re.compile(r"^\s*champion\s*(?:([+-])\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?))?\s*$")


@dataclass
class Gate:
    name: str
    holds: bool
    value: str
    bound: str
    note: str = ""


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


def _bound(
    raw: float | str, metric: str, champion: dict[str, Any] | None
) -> tuple[float | None, str]:
    """(the bound's value, how it reads); None when it is relative and there is nothing to
    compare with."""
    if isinstance(raw, int | float):
        return float(raw), f"{raw:g}"
    match = RELATIVE.match(raw)
    if not match:
        raise TestingError(
            f"gate bound {raw!r} for {metric!r} is neither a number nor 'champion [+|- N]'",
            hint='write e.g. "model.roc_auc_ovr" = "champion - 0.005" under [gates.min]',
        )
    if champion is None or metric not in champion.get("metrics", {}):
        return None, raw.strip()
    base = float(champion["metrics"][metric])
    sign, amount = match.group(1), float(match.group(2) or 0.0)
    value = base - amount if sign == "-" else base + amount
    return value, f"{raw.strip()} = {value:.4g}"


def evaluate(
    config: ProjectConfig, candidate: VersionInfo, champion: VersionInfo | None
) -> list[Gate]:
    """Every gate of ``[gates]`` for ``candidate`` (champion: the current one, if any)."""
    gates_cfg = config.gates
    results = version_results(candidate.tags)
    if results is None:
        return [
            Gate(
                "tested",
                False,
                "never tested",
                "shipml test results",
                f"run `shipml test {candidate.ref}` first",
            )
        ]
    theirs = (
        version_results(champion.tags)
        if champion and champion.version != candidate.version
        else None
    )
    gates = [Gate("tested", True, results["summary"], "shipml test results", results["time"])]
    for suite in gates_cfg.suites:
        status = results["suites"].get(suite, "not run")
        gates.append(Gate(f"suite {suite} passed", status == "passed", status, "passed"))
    metrics = results["metrics"]
    for kind, bounds in (("min", gates_cfg.min), ("max", gates_cfg.max)):
        for metric, raw in bounds.items():
            bound, reads = _bound(raw, metric, theirs)
            op = ">=" if kind == "min" else "<="
            name = f"{metric} {op} {raw if isinstance(raw, str) else f'{raw:g}'}"
            if metric not in metrics:
                gates.append(
                    Gate(
                        name,
                        False,
                        "not measured",
                        f"{op} {reads}",
                        "run the suite that measures it",
                    )
                )
                continue
            value = float(metrics[metric])
            if bound is None and champion is not None and champion.version != candidate.version:
                # A champion that was never tested (or lacks the metric) cannot vouch for
                # anything: the gate does not hold until it is tested.
                gates.append(
                    Gate(
                        name,
                        False,
                        f"{value:.4g}",
                        f"{op} {reads}",
                        f"the champion ({champion.ref}) has no {metric}; run "
                        f"`shipml test {champion.ref}`",
                    )
                )
                continue
            if bound is None:
                gates.append(
                    Gate(
                        name,
                        True,
                        f"{value:.4g}",
                        f"{op} {reads}",
                        "no champion yet: the first promotion",
                    )
                )
                continue
            holds = value >= bound if kind == "min" else value <= bound
            gates.append(Gate(name, holds, f"{value:.4g}", f"{op} {reads}"))
    return gates


def promote(
    config: ProjectConfig,
    ref: str,
    *,
    alias: str = "champion",
    force: bool = False,
    reason: str = "",
) -> Promotion:
    """Move ``alias`` to the version ``ref`` names if every gate holds (or when forced
    with a reason). Raises ``GateFailed`` listing the unmet gates otherwise."""
    if force and not reason.strip():
        raise TestingError(
            "--force needs --reason: an override is recorded with who, when and why",
            hint='e.g. --force --reason "hotfix for incident 42, approved by A. Lee"',
        )
    parsed = parse_model_ref(ref)
    if parsed.name is None:
        raise TestingError(
            f"promote takes a registered model (NAME@ALIAS or NAME/VERSION), not {ref!r}",
            hint="register the package with `shipml run` first",
        )
    registry = Registry(tracker_for(config))
    candidate = registry.resolve(parsed)
    previous = registry.aliases(candidate.name).get(alias)
    champion = (
        registry.resolve(parse_model_ref(f"{candidate.name}/{previous}")) if previous else None
    )
    result = Promotion(candidate.name, candidate.version, alias, previous)
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
    forced = bool(result.unmet and force)
    if forced and not config.audit.enabled:
        raise TestingError(
            "an override must be recorded, but the audit log is off ([audit] enabled = false)",
            hint="turn the audit log on, or fix the model so that every gate holds",
        )
    user = getpass.getuser()
    when = datetime.now(UTC).isoformat(timespec="seconds")
    unmet = [f"{g.name}: {g.value} (needs {g.bound})" for g in result.unmet]
    # Recorded before the alias moves: a move is never unrecorded.
    record_event(
        config,
        {
            "event": "promotion",
            "model": candidate.name,
            "alias": alias,
            "version": candidate.version,
            "previous_version": previous,
            "by": user,
            "forced": forced,
            "reason": reason,
            "unmet_gates": unmet,
            "gates": [g.name for g in result.gates if g.holds],
        },
    )
    registry.set_alias(candidate.name, candidate.version, alias)
    result.moved, result.forced, result.reason = True, forced, reason
    tags = {
        "shipml.promotion.by": user,
        "shipml.promotion.time": when,
        "shipml.promotion.alias": alias,
    }
    if forced:
        tags |= {
            "shipml.promotion.forced": "true",
            "shipml.promotion.reason": reason,
            "shipml.promotion.unmet_gates": "; ".join(unmet)[:4000],
        }
    else:  # a promotion on merit replaces an earlier override's record on this version
        for key in ("forced", "reason", "unmet_gates"):
            registry.delete_version_tag(
                candidate.name, candidate.version, f"shipml.promotion.{key}"
            )
    for key, value in tags.items():
        registry.set_version_tag(candidate.name, candidate.version, key, value)
    return result
