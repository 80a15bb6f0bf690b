"""Gates read the test results recorded on a version; relative bounds use the champion's."""

from __future__ import annotations

import json

import pytest

from shipml.config import ProjectConfig
from shipml.errors import TestingError
from shipml.testing.gates import evaluate
from shipml.tracking import VersionInfo


def version(number: str, metrics: dict[str, float] | None, suites: dict[str, str]) -> VersionInfo:
    tags = {}
    if metrics is not None:
        record = {
            "status": "failed" if "failed" in suites.values() else "passed",
            "summary": "n passed",
            "suites": suites,
            "metrics": metrics,
            "files": [],
            "time": "2026-11-28T00:00:00+00:00",
        }
        tags = {"shipml.tests.record": json.dumps(record)}
    return VersionInfo("m", number, "file:///x", "run", tags=tags)


def config(**gates) -> ProjectConfig:
    return ProjectConfig.model_validate({"gates": gates})


PASSED = {"data": "passed", "model": "passed"}


def test_an_untested_version_fails_the_first_gate():
    gates = evaluate(config(), version("2", None, {}), None)
    assert [(g.name, g.holds) for g in gates] == [("tested", False)]
    assert "shipml test m/2" in gates[0].note


def test_relative_bound_uses_the_champion_and_fails_below_it():
    cfg = config(min={"model.roc_auc_ovr": "champion - 0.005"})
    champion = version("1", {"model.roc_auc_ovr": 0.99}, PASSED)
    worse = evaluate(cfg, version("2", {"model.roc_auc_ovr": 0.98}, PASSED), champion)
    gate = worse[-1]
    assert not gate.holds and gate.value == "0.98" and "= 0.985" in gate.bound
    close = evaluate(cfg, version("2", {"model.roc_auc_ovr": 0.986}, PASSED), champion)
    assert close[-1].holds


def test_without_champion_results_a_relative_bound_holds_and_says_why():
    cfg = config(min={"model.accuracy": "champion"})
    gates = evaluate(cfg, version("1", {"model.accuracy": 0.5}, PASSED), None)
    assert gates[-1].holds and "no champion" in gates[-1].note


def test_a_champion_that_was_never_tested_cannot_vouch_for_a_relative_bound():
    cfg = config(min={"model.accuracy": "champion - 0.01"})
    gates = evaluate(cfg, version("2", {"model.accuracy": 0.5}, PASSED), version("1", None, {}))
    assert not gates[-1].holds and "shipml test m/1" in gates[-1].note


def test_a_failed_suite_an_unmeasured_metric_and_a_max_bound_fail():
    cfg = config(
        suites=["data", "model", "api"], max={"model.latency_p95_ms": 5.0}, min={"api.p95_ms": 1.0}
    )
    gates = evaluate(
        cfg,
        version("2", {"model.latency_p95_ms": 7.5}, {"data": "passed", "model": "failed"}),
        None,
    )
    by_name = {g.name: g for g in gates}
    assert by_name["suite data passed"].holds
    assert not by_name["suite model passed"].holds
    assert by_name["suite api passed"].value == "not run" and not by_name["suite api passed"].holds
    assert not by_name["model.latency_p95_ms <= 5"].holds
    assert by_name["api.p95_ms >= 1"].value == "not measured"


def test_a_bound_that_is_neither_number_nor_champion_is_a_clear_error():
    cfg = config(min={"model.accuracy": "best - 1"})
    with pytest.raises(TestingError, match="neither a number nor 'champion"):
        evaluate(cfg, version("2", {"model.accuracy": 0.9}, PASSED), None)
