"""The Grafana dashboard against Grafana's own dashboard schema.

Grafana Labs generates typed models from the CUE kinds that define Grafana's dashboard
JSON (grafana-foundation-sdk, pinned to the Grafana 11.6 schema). The dashboard must
come back whole through them: no field the schema does not have, nothing misplaced;
every panel is a panel plugin with a schema whose options those models read, every
query a Prometheus query, every unit, legend mode, variable type, refresh and sort one
of the schema's values. Plus what an import needs beyond the schema: unique panel ids
and query refIds, a 24-column grid without overlaps, a valid uid, every ``$variable``
defined. Each rule is shown to catch a broken dashboard too. (A real Prometheus answers
every query of the dashboard in test_prometheus.py.)"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from shipml.monitor import grafana

sdk = pytest.importorskip("grafana_foundation_sdk", reason="pip install -e .[dev]")

from grafana_foundation_sdk.cog import runtime as cogruntime  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.cog.plugins import register_default_plugins  # noqa: E402
from grafana_foundation_sdk.models import common, prometheus, units  # noqa: E402
from grafana_foundation_sdk.models import dashboard as schema  # noqa: E402

register_default_plugins()

UNITS = {v for v in vars(units).values() if isinstance(v, str)}
BUILTIN = {"__rate_interval", "__interval", "__range", "__all"}
VARIABLE = re.compile(r"\$\{?(\w+)")


def lost(ours: Any, back: Any, path: str = "") -> list[str]:
    """Paths of ``ours`` that did not come back (or came back different)."""
    if isinstance(ours, dict):
        if not isinstance(back, dict):
            return [f"{path}: not an object in the schema"]
        out = []
        for key, value in ours.items():
            if key not in back:
                out.append(f"{path}/{key}: unknown to the schema")
            else:
                out += lost(value, back[key], f"{path}/{key}")
        return out
    if isinstance(ours, list):
        if not isinstance(back, list) or len(back) != len(ours):
            return [f"{path}: list changed"]
        return [
            p
            for i, (a, b) in enumerate(zip(ours, back, strict=True))
            for p in lost(a, b, f"{path}[{i}]")
        ]
    return [] if ours == back else [f"{path}: {ours!r} read back as {back!r}"]


def problems(board: dict[str, Any]) -> list[str]:
    """Everything wrong with ``board`` as a Grafana dashboard (empty: nothing)."""
    parsed = schema.Dashboard.from_json(board)
    out = lost(board, json.loads(json.dumps(parsed, cls=JSONEncoder)))
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", str(board.get("uid", ""))):
        out.append(f"uid {board.get('uid')!r} is not a Grafana uid")
    if not isinstance(board.get("schemaVersion"), int):
        out.append("schemaVersion is not an integer")
    defined = {v["name"] for v in board["templating"]["list"]} | BUILTIN
    for v, model in zip(board["templating"]["list"], parsed.templating.list_val, strict=True):
        for field, kind in (("type", schema.VariableType), ("refresh", schema.VariableRefresh)):
            if field in v and v[field] not in {k.value for k in kind}:
                out.append(f"variable {v['name']}: {field} {v[field]!r} is not one of the schema's")
        if "sort" in v and v["sort"] not in {k.value for k in schema.VariableSort}:
            out.append(f"variable {v['name']}: sort {v['sort']!r} is not one of the schema's")
        if model.name != v["name"]:
            out.append(f"variable {v['name']} read back as {model.name}")
    ids, cells = set(), set()
    for panel, model in zip(board["panels"], parsed.panels, strict=True):
        where = f"panel {panel.get('id')} ({panel.get('title')})"
        if panel.get("id") in ids:
            out.append(f"{where}: the id is used twice")
        ids.add(panel.get("id"))
        if cogruntime.panelcfg_config(panel.get("type", "")) is None:
            out.append(f"{where}: {panel.get('type')!r} is not a panel plugin with a schema")
        elif isinstance(model.options, dict):
            out.append(f"{where}: its options are not the plugin's options")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if unit is not None and unit not in UNITS:
            out.append(f"{where}: unit {unit!r} is not a Grafana unit")
        legend = panel.get("options", {}).get("legend", {})
        if legend.get("displayMode", "list") not in {m.value for m in common.LegendDisplayMode}:
            out.append(f"{where}: legend displayMode {legend['displayMode']!r}")
        if legend.get("placement", "bottom") not in {m.value for m in common.LegendPlacement}:
            out.append(f"{where}: legend placement {legend['placement']!r}")
        grid = panel.get("gridPos", {})
        x, y, w, h = (grid.get(k, -1) for k in ("x", "y", "w", "h"))
        if not (x >= 0 and w > 0 and x + w <= 24 and y >= 0 and h > 0):
            out.append(f"{where}: gridPos {grid} is off Grafana's 24-column grid")
        taken = {(x + i, y + j) for i in range(max(w, 0)) for j in range(max(h, 0))}
        if taken & cells:
            out.append(f"{where}: overlaps another panel")
        cells |= taken
        refs = [t.get("refId") for t in panel.get("targets", [])]
        if len(set(refs)) != len(refs) or None in refs:
            out.append(f"{where}: refIds {refs} are not unique")
        for target, query in zip(panel.get("targets", []), model.targets or [], strict=True):
            if not isinstance(query, prometheus.Dataquery):
                out.append(f"{where}: query {target.get('refId')} is not a Prometheus query")
        text = json.dumps(panel)
        out += [
            f"{where}: ${n} is not a variable" for n in VARIABLE.findall(text) if n not in defined
        ]
    return out


def test_the_dashboard_is_what_grafanas_schema_describes():
    board = grafana.dashboard()
    assert problems(board) == []
    assert json.loads(grafana.dashboard_json()) == board  # the file written is the same
    assert len(board["panels"]) == len(grafana.PANELS)


@pytest.mark.parametrize(
    ("break_it", "caught"),
    [
        (lambda b: b["panels"][0].update(expr="up"), "/panels[0]/expr: unknown to the schema"),
        (lambda b: b.update(refreshEvery="30s"), "/refreshEvery: unknown to the schema"),
        (lambda b: b["panels"][1].update(type="graphz"), "is not a panel plugin"),
        (
            lambda b: b["panels"][0]["fieldConfig"]["defaults"].update(unit="requests"),
            "is not a Grafana unit",
        ),
        (lambda b: b["panels"][2]["options"]["legend"].update(displayMode="big"), "displayMode"),
        (lambda b: b["panels"][3].update(id=1), "the id is used twice"),
        (lambda b: b["panels"][3]["gridPos"].update(x=20), "off Grafana's 24-column grid"),
        (lambda b: b["panels"][3]["gridPos"].update(x=0), "overlaps another panel"),
        (lambda b: b["panels"][4]["targets"][1].update(refId="A"), "are not unique"),
        (lambda b: b["templating"]["list"][1].update(refresh=7), "refresh 7"),
        (lambda b: b.update(uid="no spaces allowed"), "is not a Grafana uid"),
        (
            lambda b: b["panels"][0]["targets"][0].update(expr="rate(x{job=~'$jobb'}[5m])"),
            "$jobb is not a variable",
        ),
    ],
)
def test_each_rule_catches_a_broken_dashboard(break_it, caught):
    board = copy.deepcopy(grafana.dashboard())
    break_it(board)
    found = problems(board)
    assert any(caught in p for p in found), found
