"""Promotion gates: what a model version must show before it becomes champion.

``[gates]`` in shipml.toml names the suites whose every test must have passed and
bounds on the metrics ``shipml test`` recorded on the version (``suite.metric``). A
bound is a number or relative to the current champion: ``"champion - 0.005"``.
``evaluate`` reads them; the one function that moves an alias through them is
``shipml.project.promotion.promote``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import TestingError
from shipml.testing.quality import reaches
from shipml.testing.runner import record_of
from shipml.tracking import VersionInfo

RELATIVE = re.compile(r"^\s*champion\s*(?:([+-])\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?))?\s*$")


@dataclass
class Gate:
    name: str
    holds: bool
    value: str
    bound: str
    note: str = ""


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
    results, why = record_of(candidate)
    if results is None:
        return [
            Gate(
                "tested",
                False,
                why,
                "shipml test results",
                f"run `shipml test {candidate.ref}` first",
            )
        ]
    # The champion's record vouches for a relative bound only if it is its own.
    theirs = record_of(champion)[0] if champion and champion.version != candidate.version else None
    summary = str(results.get("summary", ""))
    # With no suite gated, "tested" is the only word on the tests: a failed run fails it.
    unread = results.get("status") == "failed" and not gates_cfg.suites
    note = "the tests failed, and [gates] suites names none" if unread else ""
    gates = [
        Gate(
            "tested",
            not unread,
            summary,
            "shipml test results",
            note or str(results.get("time", "")),
        )
    ]
    for suite in gates_cfg.suites:
        status = results["suites"].get(suite, "not run")
        gates.append(Gate(f"suite {suite} passed", status == "passed", status, "passed"))
    other = champion if champion and champion.version != candidate.version else None
    for kind, bounds in (("min", gates_cfg.min), ("max", gates_cfg.max)):
        for metric, raw in bounds.items():
            gates.append(_metric_gate(kind, metric, raw, results["metrics"], theirs, other))
    return gates


def _metric_gate(
    kind: str,
    metric: str,
    raw: float | str,
    metrics: dict[str, Any],
    theirs: dict[str, Any] | None,
    champion: VersionInfo | None,
) -> Gate:
    """The gate of one bound (``kind`` min or max) on one recorded metric; ``champion``
    is the current champion when it is another version."""
    bound, reads = _bound(raw, metric, theirs)
    op = ">=" if kind == "min" else "<="
    name = f"{metric} {op} {raw if isinstance(raw, str) else f'{raw:g}'}"
    if metric not in metrics:
        return Gate(name, False, "not measured", f"{op} {reads}", _unmeasured(metric, metrics))
    value = float(metrics[metric])
    if bound is None and champion is not None:
        # A champion that was never tested (or lacks the metric) cannot vouch for
        # anything: the gate does not hold until it is tested.
        note = f"the champion ({champion.ref}) has no {metric}; run `shipml test {champion.ref}`"
        return Gate(name, False, f"{value:.4g}", f"{op} {reads}", note)
    if bound is None:
        return Gate(
            name, True, f"{value:.4g}", f"{op} {reads}", "no champion yet: the first promotion"
        )
    holds = reaches(value, bound, higher=kind == "min")  # a bound computed is rounded
    return Gate(name, holds, f"{value:.4g}", f"{op} {reads}")


def _unmeasured(metric: str, metrics: dict[str, Any]) -> str:
    """What to do about a metric the record lacks: a misspelt name shows its suite's."""
    suite = metric.split(".", 1)[0]
    theirs = sorted(m for m in metrics if m.startswith(suite + "."))
    if not theirs:
        return f"run the suite that measures it: shipml test --suite {suite}"
    shown = ", ".join(theirs[:8]) + (", ..." if len(theirs) > 8 else "")
    return f"the {suite} suite recorded no {metric}; it recorded {shown}"
