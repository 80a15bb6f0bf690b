"""The ML Test Score as the paper computes it: 1 automated, 0.5 manual with documented
results, section sums, the final score the minimum over the sections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipml.config import ProjectConfig
from shipml.errors import TestingError
from shipml.testing.score import TESTS, compute


def results(*tests: tuple[str, str, list[str]]) -> dict:
    return {
        "model": {},
        "tests": [{"check": c, "name": c, "outcome": o, "score": s} for c, o, s in tests],
    }


def test_points_sections_and_final(tmp_path: Path):
    (tmp_path / "privacy.md").write_text("reviewed on 2026-11-01: no personal data")
    cfg = ProjectConfig.model_validate(
        {
            "score": {"manual": {"data-5": "privacy.md", "data-6": "missing.md"}},
            "rollout": {"mode": "single"},
            "gates": {"suites": [], "min": {}},
        }
    )
    cfg.root = tmp_path
    score = compute(
        cfg,
        results(
            ("data.schema", "passed", ["data-1"]),
            ("data.meta", "failed", ["data-4"]),  # a failing test is still automated
            ("model.calibration", "skipped", ["model-2"]),  # skipped: did not run
            ("model.simpler", "passed", ["model-5"]),
        ),
    )
    by_id = {t.id: t for t in score.tests}
    assert len(score.tests) == len(TESTS) == 28
    assert by_id["data-1"].points == 1.0 and by_id["data-4"].points == 1.0
    assert by_id["data-5"].points == 0.5 and by_id["data-5"].how == "manual"
    assert by_id["data-6"].points == 0.0  # the document does not exist
    assert by_id["model-2"].points == 0.0
    assert score.sections == {"data": 2.5, "model": 1.0, "infra": 0.0, "monitor": 0.0}
    assert score.final == 0.0
    assert score.automated == 3


def test_an_unknown_manual_test_id_is_an_error(tmp_path: Path):
    cfg = ProjectConfig.model_validate({"score": {"manual": {"data-9": "x.md"}}})
    with pytest.raises(TestingError, match="data-9"):
        compute(cfg, results())


def test_a_results_file_that_is_not_json_is_a_clear_error(tmp_path: Path):
    from shipml.testing.score import load_results

    bad = tmp_path / "results.json"
    bad.write_text("not json")
    with pytest.raises(TestingError, match=r"not a results\.json"):
        load_results(ProjectConfig(), bad)
    bad.write_text("[1, 2]")
    with pytest.raises(TestingError, match="not a shipml results file"):
        load_results(ProjectConfig(), bad)
    for shape in (
        {"tests": [1]},
        {"tests": "x"},
        {"tests": [{"outcome": "passed", "score": "data-1"}]},
        {"tests": [{"name": "t"}]},
        {"tests": [], "model": 5},
    ):
        bad.write_text(json.dumps(shape))  # once a traceback in `shipml score`
        with pytest.raises(TestingError, match="not a shipml results file"):
            load_results(ProjectConfig(), bad)


def test_monitoring_counts_only_what_the_configuration_makes_run(tmp_path: Path):
    base = {"rollout": {"mode": "single"}, "gates": {"suites": [], "min": {}}}
    quiet = ProjectConfig.model_validate(base)
    assert compute(quiet, results()).sections["monitor"] == 0.0  # live metrics, no alerts
    shared = {"path": "postgresql://shipml@db.internal/audit"}  # every pod's audit log
    watched = ProjectConfig.model_validate(
        {
            **base,
            "deploy": {"prod": {"prometheus_operator": True}},
            "monitor": {"on_breach": "retrain"},
            "audit": shared,
        }
    )
    by_id = {t.id: t for t in compute(watched, results()).tests}
    for test_id in (
        "monitor-2",
        "monitor-3",
        "monitor-4",
        "monitor-6",
        "monitor-7",
        "model-2",
        "model-4",
    ):
        assert by_id[test_id].how == "automated", test_id
    assert by_id["monitor-1"].how == "missing" and by_id["monitor-5"].how == "missing"
    unaudited = ProjectConfig.model_validate(
        {**base, "deploy": {"prod": {"prometheus_operator": True}}, "audit": {"enabled": False}}
    )
    by_id = {t.id: t for t in compute(unaudited, results()).tests}
    assert by_id["monitor-7"].how == "missing"  # no feedback join without the audit log
    assert by_id["monitor-4"].how == "missing"  # no retraining configured
    # An audit log file in each pod: the monitor CronJob and the servers never see the
    # gateway's feedback or the servers' predictions, so retraining and quality do not run.
    per_pod = ProjectConfig.model_validate(
        {
            **base,
            "deploy": {"prod": {"prometheus_operator": True}},
            "monitor": {"on_breach": "retrain"},
        }
    )
    by_id = {t.id: t for t in compute(per_pod, results()).tests}
    for test_id in ("monitor-4", "model-4", "monitor-7", "model-2"):
        assert by_id[test_id].how == "missing", test_id
    assert by_id["monitor-2"].how == "automated"  # the live drift alert still runs
