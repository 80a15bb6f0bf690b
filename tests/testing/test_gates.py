"""Gates read the test results recorded on a version; relative bounds use the champion's."""

from __future__ import annotations

import json

import pytest

from shipml.config import ProjectConfig
from shipml.errors import TestingError
from shipml.testing.gates import evaluate
from shipml.tracking import VersionInfo


def version(number: str, metrics: dict[str, float] | None, suites: dict[str, str]) -> VersionInfo:
    tags = {"shipml.model_digest": f"digest-of-{number}"}
    if metrics is not None:
        record = {
            "model_digest": f"digest-of-{number}",
            "version": number,
            "status": "failed" if "failed" in suites.values() else "passed",
            "summary": "n passed",
            "suites": suites,
            "metrics": metrics,
            "files": [],
            "time": "2026-11-28T00:00:00+00:00",
        }
        tags["shipml.tests.record"] = json.dumps(record)
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


def test_results_of_another_version_do_not_vouch_for_this_one():
    """A record copied (or edited) from version 1 onto version 2 is not version 2's."""
    tested = version("1", {"model.accuracy": 0.99}, PASSED)
    copied = VersionInfo(
        "m", "2", "file:///x", "run", tags={**tested.tags, "shipml.model_digest": "digest-of-2"}
    )
    gates = evaluate(config(min={"model.accuracy": 0.9}), copied, None)
    assert [(g.name, g.holds) for g in gates] == [("tested", False)]
    assert "digest-of-1" in gates[0].value and "shipml test m/2" in gates[0].note
    unnamed = json.loads(tested.tags["shipml.tests.record"])
    del unnamed["model_digest"]  # a record that names no model vouches for none
    bare = VersionInfo("m", "1", "file:///x", "run", tags={**tested.tags})
    bare.tags["shipml.tests.record"] = json.dumps(unnamed)
    assert not evaluate(config(), bare, None)[0].holds


def test_a_champion_record_of_another_model_does_not_set_a_relative_bound():
    champion = version("1", {"model.accuracy": 0.2}, PASSED)
    champion.tags["shipml.model_digest"] = "digest-of-something-else"
    cfg = config(min={"model.accuracy": "champion"})
    gates = evaluate(cfg, version("2", {"model.accuracy": 0.5}, PASSED), champion)
    assert not gates[-1].holds and "shipml test m/1" in gates[-1].note


@pytest.mark.parametrize(
    "raw",
    [
        "[1, 2]",
        "5",
        '"passed"',
        "{not json",
        json.dumps({"suites": ["data"], "metrics": {}}),
        json.dumps({"suites": {"data": "passed"}, "metrics": {"model.accuracy": "high"}}),
        json.dumps({"suites": {"data": "passed"}, "metrics": {}, "summary": 3}),
    ],
)
def test_an_unreadable_test_record_fails_the_gate_without_a_traceback(raw):
    info = version("2", None, {})
    info.tags["shipml.tests.record"] = raw
    gates = evaluate(config(min={"model.accuracy": 0.5}), info, None)
    assert [(g.name, g.holds) for g in gates] == [("tested", False)]
    assert "unreadable" in gates[0].value


def test_a_nan_metric_or_nan_champion_never_holds():
    nan = float("nan")
    cfg = config(min={"model.accuracy": 0.5}, max={"model.rmse": 1.0})
    gates = evaluate(cfg, version("2", {"model.accuracy": nan, "model.rmse": nan}, PASSED), None)
    assert [g.holds for g in gates[-2:]] == [False, False]
    relative = config(min={"model.accuracy": "champion - 0.1"})
    champion = version("1", {"model.accuracy": nan}, PASSED)
    gates = evaluate(relative, version("2", {"model.accuracy": 0.9}, PASSED), champion)
    assert not gates[-1].holds


def test_a_record_names_its_model_and_a_record_of_another_model_is_not_merged():
    from shipml.testing.runner import merge_record

    run = {
        "created": "2026-12-01T00:00:00+00:00",
        "model": {"version": "2", "model_digest": "digest-of-2"},
        "suites": {"model": {"status": "passed"}},
        "metrics": {"model.accuracy": 0.9},
        "summary": {"passed": 1, "failed": 0, "error": 0, "skipped": 0},
    }
    other = {"model_digest": "digest-of-1", "suites": {"data": "passed"}, "metrics": {}}
    record = merge_record(other, run, [])
    assert record["model_digest"] == "digest-of-2" and record["version"] == "2"
    assert record["suites"] == {"model": "passed"}  # not data: that was another model's
    same = merge_record({**other, "model_digest": "digest-of-2"}, run, [])
    assert same["suites"] == {"data": "passed", "model": "passed"}


def test_a_misspelt_gate_metric_fails_and_names_what_the_suite_recorded():
    cfg = config(min={"model.acuracy": 0.9, "api.p95_ms": 1.0})
    gates = evaluate(cfg, version("2", {"model.accuracy": 0.99}, PASSED), None)
    typo, unrun = gates[-2], gates[-1]
    assert not typo.holds and typo.value == "not measured"
    assert "recorded no model.acuracy" in typo.note and "model.accuracy" in typo.note
    assert not unrun.holds and "shipml test --suite api" in unrun.note


@pytest.mark.parametrize(
    "gates",
    [
        {"suites": ["data", "modle"]},
        {"min": {"accuracy": 0.9}},
        {"max": {"browser": 1.0}},
        {"min": {"model.accuracy": float("nan")}},
    ],
)
def test_a_gate_no_version_could_pass_is_a_config_error(gates):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"unknown suite|SUITE\.NAME|NaN"):
        config(**gates)


def test_with_no_suite_gated_a_failed_test_run_fails_the_tested_gate():
    failed = version("2", {"model.accuracy": 0.9}, {"data": "failed", "model": "passed"})
    (tested,) = evaluate(config(suites=[]), failed, None)
    assert (tested.name, tested.holds) == ("tested", False)
    assert "the tests failed, and [gates] suites names none" in tested.note
    passed = version("3", {"model.accuracy": 0.9}, PASSED)
    assert [g.holds for g in evaluate(config(suites=[]), passed, None)] == [True]
    gated = evaluate(config(suites=["model"]), failed, None)  # the suites listed decide
    assert [(g.name, g.holds) for g in gated] == [("tested", True), ("suite model passed", True)]


def test_a_metric_exactly_at_a_relative_bound_holds_despite_rounding():
    """champion - 0.1 of an RMSE of 0.3 is 0.19999999999999998 in floating point: an RMSE
    of 0.2 is at the bound and held not; 0.7 + 0.1 is 0.7999999999999999 (held anyway)."""
    cfg = config(max={"model.rmse": "champion - 0.1"}, min={"model.r2": "champion + 0.1"})
    champion = version("1", {"model.rmse": 0.3, "model.r2": 0.7}, PASSED)
    at = evaluate(cfg, version("2", {"model.rmse": 0.2, "model.r2": 0.8}, PASSED), champion)
    assert [g.holds for g in at[-2:]] == [True, True]
    past = evaluate(cfg, version("2", {"model.rmse": 0.2001, "model.r2": 0.7999}, PASSED), champion)
    assert [g.holds for g in past[-2:]] == [False, False]
