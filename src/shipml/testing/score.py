"""The ML Test Score (Breck, Cai, Nielsen, Salib, Sculley: "The ML Test Score: A Rubric
for ML Production Readiness and Technical Debt Reduction", IEEE Big Data 2017).

28 tests in four sections. Per test: 0.5 points when it is run manually with the
results documented, 1.0 when a system runs it automatically. A section's score is the
sum of its tests' points; the final score is the minimum over the four sections.

What counts as automated here: a shipml check or a project test (marked
``@pytest.mark.score("data-7")``) mapped to the test ran in the latest ``shipml test``
results, or shipml does it on every run by configuration (named below). Manual tests
are listed in ``[score] manual`` with the document holding their results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import TestingError
from shipml.testing.report import RESULTS

# Written on a model version by `shipml tune` (read here for model-3 and infra-1).
TAG_TUNE_RECORD = "shipml.tune.record"
TAG_REPRODUCIBILITY = "shipml.reproducibility"
CI_FILES = (".github/workflows/shipml.yml", ".gitlab-ci.yml")

SECTIONS = {"data": "Data", "model": "Model", "infra": "ML infrastructure", "monitor": "Monitoring"}

# (id, title) in the paper's order.
TESTS: list[tuple[str, str]] = [
    ("data-1", "Feature expectations are captured in a schema"),
    ("data-2", "All features are beneficial"),
    ("data-3", "No feature's cost is too much"),
    ("data-4", "Features adhere to meta-level requirements"),
    ("data-5", "The data pipeline has appropriate privacy controls"),
    ("data-6", "New features can be added quickly"),
    ("data-7", "All input feature code is tested"),
    ("model-1", "Model specs are reviewed and submitted"),
    ("model-2", "Offline and online metrics correlate"),
    ("model-3", "All hyperparameters have been tuned"),
    ("model-4", "The impact of model staleness is known"),
    ("model-5", "A simpler model is not better"),
    ("model-6", "Model quality is sufficient on important data slices"),
    ("model-7", "The model is tested for considerations of inclusion"),
    ("infra-1", "Training is reproducible"),
    ("infra-2", "Model specs are unit tested"),
    ("infra-3", "The ML pipeline is integration tested"),
    ("infra-4", "Model quality is validated before serving"),
    ("infra-5", "The model is debuggable"),
    ("infra-6", "Models are canaried before serving"),
    ("infra-7", "Serving models can be rolled back"),
    ("monitor-1", "Dependency changes result in notification"),
    ("monitor-2", "Data invariants hold for inputs"),
    ("monitor-3", "Training and serving are not skewed"),
    ("monitor-4", "Models are not too stale"),
    ("monitor-5", "Models are numerically stable"),
    ("monitor-6", "Computing performance has not regressed"),
    ("monitor-7", "Prediction quality has not regressed"),
]
TITLES = dict(TESTS)


@dataclass
class TestScore:
    __test__ = False  # not a pytest test class

    id: str
    title: str
    points: float  # 0, 0.5 or 1.0
    how: str  # "automated" | "manual" | "missing"
    evidence: list[str] = field(default_factory=list)

    @property
    def section(self) -> str:
        return self.id.split("-")[0]


@dataclass
class Score:
    tests: list[TestScore]

    @property
    def sections(self) -> dict[str, float]:
        return {s: sum(t.points for t in self.tests if t.section == s) for s in SECTIONS}

    @property
    def final(self) -> float:
        return min(self.sections.values())

    @property
    def automated(self) -> int:
        return sum(t.how == "automated" for t in self.tests)

    @property
    def missing(self) -> list[TestScore]:
        return [t for t in self.tests if t.how == "missing"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "final": self.final,
            "sections": self.sections,
            "automated": self.automated,
            "tests": [t.__dict__ for t in self.tests],
        }


def _config_evidence(config: ProjectConfig, results: dict[str, Any]) -> dict[str, list[str]]:
    """Tests shipml automates by configuration, on every run or promotion."""
    found: dict[str, list[str]] = {}
    model = results.get("model") or {}
    if model.get("run_id") and config.audit.enabled:
        found["infra-5"] = [
            "lineage (run, dataset digests, commit) in every package and "
            "`shipml audit explain` for every prediction"
        ]
    if config.gates.suites:
        found.setdefault("infra-4", []).append(
            f"promotion gate: suites {', '.join(config.gates.suites)} must pass"
        )
    for test_id, items in _monitoring_evidence(config).items():
        found.setdefault(test_id, []).extend(items)
    return found


def _monitoring_evidence(config: ProjectConfig) -> dict[str, list[str]]:
    """What the monitoring configuration makes run and act (docs/monitoring.md), on the
    cluster ``shipml deploy render`` describes: the server's live metrics count only with
    the alert rules a Prometheus evaluates on them (``prometheus_operator`` in an
    environment). What reads the audit log — the monitor CronJob that retrains, and the
    servers' quality from the gateway's feedback labels — counts only when every pod
    reaches the same log: an audit database (PostgreSQL URL), not a file in each pod."""
    from shipml.audit.database import is_url

    m = config.monitor
    alerting = any(config.deploy.env(e).prometheus_operator for e in ("dev", "staging", "prod"))
    shared_log = config.audit.enabled and is_url(config.audit.path)
    found: dict[str, list[str]] = {}
    if m.live and alerting:
        found["monitor-2"] = [
            "the server's live window tests every input feature against its reference; "
            "ShipmlFeatureDrift alerts"
        ]
        found["monitor-3"] = [
            "the server compares serving inputs with the training-time profile "
            "(shipml_feature_drift); ShipmlFeatureDrift and ShipmlPredictionDrift alert"
        ]
    if m.on_breach == "retrain" and shared_log:
        found["monitor-4"] = [
            "the monitor CronJob reads the shared audit log and retrains when the champion "
            "goes stale ([monitor] on_breach)"
        ]
        found["model-4"] = [
            "the champion is scored on newer data (drift, quality) before each retraining"
        ]
    if alerting:
        found["monitor-6"] = [
            "ShipmlSlowPredictions and ShipmlErrorRate alert rules (PrometheusRule)"
        ]
    if alerting and m.live and shared_log:
        found["monitor-7"] = ["ShipmlQualityDrop: quality from feedback below the hold-out's"]
        found["model-2"] = [
            "online quality (feedback labels) is compared with the offline hold-out metrics "
            "(shipml_quality vs shipml_quality_holdout)"
        ]
    return found


def load_results(config: ProjectConfig, path: Path | None = None) -> dict[str, Any]:
    file = path or config.path(config.tests.output) / RESULTS
    if not file.is_file():
        raise TestingError(
            f"no test results at {file}",
            hint="run `shipml test` first (the score counts what the tests automate)",
        )
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TestingError(
            f"{file} is not a results.json written by `shipml test` ({exc})",
            hint="give the results.json of a `shipml test` run (or run it again)",
        ) from exc
    if not isinstance(results, dict) or "tests" not in results:
        raise TestingError(
            f"{file} is JSON but not a shipml results file (no 'tests')",
            hint="give the results.json of a `shipml test` run",
        )
    tests, model = results["tests"], results.get("model") or {}
    shaped = isinstance(tests, list) and all(
        isinstance(t, dict)
        and isinstance(t.get("outcome"), str)
        and isinstance(t.get("score") or [], list)
        and isinstance(t.get("check") or t.get("name") or "", str)
        for t in tests
    )
    if not shaped or not isinstance(model, dict):
        raise TestingError(
            f"{file} is not a shipml results file: 'tests' is not a list of test records "
            "(each with an outcome) or 'model' is not an object",
            hint="give the results.json of a `shipml test` run (or run it again)",
        )
    return results


def compute(config: ProjectConfig, results: dict[str, Any]) -> Score:
    evidence: dict[str, list[str]] = {}
    for t in results.get("tests", []):
        if t["outcome"] in ("passed", "failed"):
            for test_id in t.get("score") or []:
                evidence.setdefault(test_id, []).append(
                    f"{t.get('check') or t.get('name')} ({t['outcome']})"
                )
    for test_id, items in _config_evidence(config, results).items():
        evidence.setdefault(test_id, []).extend(items)
    for test_id, items in _version_evidence(config, results).items():
        evidence.setdefault(test_id, []).extend(items)
    manual = config.score.manual
    unknown = [k for k in manual if k not in TITLES]
    if unknown:
        raise TestingError(
            f"[score] manual names {unknown[0]!r}, which is not an ML Test Score test",
            hint="tests are data-1..7, model-1..7, infra-1..7, monitor-1..7 (docs/testing.md)",
        )
    scores = []
    for test_id, title in TESTS:
        if test_id in evidence:
            scores.append(TestScore(test_id, title, 1.0, "automated", evidence[test_id]))
        elif test_id in manual and config.path(manual[test_id]).is_file():
            scores.append(TestScore(test_id, title, 0.5, "manual", [manual[test_id]]))
        else:
            scores.append(TestScore(test_id, title, 0.0, "missing"))
    return Score(scores)


def _version_evidence(config: ProjectConfig, results: dict[str, Any]) -> dict[str, list[str]]:
    """What the tested version's records show: its tuning (model-3), a second training
    with the same seed (infra-1), and code under review (model-1)."""
    model = results.get("model") or {}
    if not model.get("name") or not model.get("version"):
        return {}
    from shipml.errors import ShipmlError
    from shipml.tracking import Registry, tracker_for

    try:
        tracker = tracker_for(config)
        info = Registry(tracker).resolve(f"{model['name']}/{model['version']}")
        run = tracker.get_run(info.run_id) if info.run_id else None
    except ShipmlError:
        return {}
    found: dict[str, list[str]] = {}
    tuned = _json(info.tags.get(TAG_TUNE_RECORD))
    if tuned and not tuned.get("untuned") and int(tuned.get("trials_complete", 0)) >= 2:
        fixed = ", ".join(tuned.get("fixed") or []) or "none"
        found["model-3"] = [
            f"`shipml tune` study {tuned.get('study')}: {tuned['trials_complete']} trials over "
            f"{', '.join(tuned.get('searched') or [])} (not hyperparameters: {fixed})"
        ]
    repro = _json(info.tags.get(TAG_REPRODUCIBILITY))
    if repro and repro.get("status") in ("passed", "failed"):
        found["infra-1"] = [
            f"trained twice with the same seed: {repro['status']} (largest metric difference "
            f"{float(repro.get('max_difference', 0)):.2g}, tolerance {repro.get('tolerance')})"
        ]
    tags = run.data.tags if run is not None else {}
    commit = tags.get("mlflow.source.git.commit")
    ci = [f for f in CI_FILES if config.path(f).is_file()]
    if commit and tags.get("shipml.git.dirty") == "false" and ci:
        found["model-1"] = [
            f"trained from committed code ({commit[:12]}, no uncommitted change); {ci[0]} "
            "posts the comparison with the champion on every pull request for review"
        ]
    return found


def _json(raw: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
