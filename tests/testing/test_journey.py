"""`shipml test`, `shipml promote` and `shipml score` on a real project made by the
template: real MLflow store, real pytest run, a real model server over a socket. The
commands run in this process (`shipml_here`); the server in its own."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from shipml.audit import open_log
from shipml.config import load_config
from shipml.templates import create_project
from shipml.tracking import Registry, parse_model_ref, tracker_for
from tests.conftest import shipml_here

SCHEMA = Path(__file__).with_name("junit-10.xsd")  # Jenkins' JUnit schema (xunit-plugin)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template project, trained and registered as challenger."""
    folder = create_project(tmp_path_factory.mktemp("t") / "penguins", "penguins")
    run = shipml_here("run", "--alias", "challenger", cwd=folder)
    assert run.returncode == 0, run.stderr
    return folder


def _browser() -> bool:
    """The browser suite can run here; in CI it must (a missing tool is a failure)."""
    from shipml.demo import browser_available

    if os.environ.get("CI") == "true" and not browser_available():
        raise RuntimeError("CI=true but Chromium or Playwright is missing (scripts/chromium.sh)")
    return browser_available()


SUITES = ["unit", "data", "model", "api"] + (["browser"] if _browser() else [])


PROBE = """
import sys
from pathlib import Path


def pytest_sessionfinish(session):
    Path(__file__).with_name("mlflow-loaded").write_text(str("mlflow" in sys.modules))
"""


@pytest.fixture(scope="module")
def tested(project: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Tested (the suites that can run here), then promoted to champion. A probe plugin
    in the pytest process records whether it loaded MLflow (``mlflow-loaded`` beside
    the project)."""
    probe = tmp_path_factory.mktemp("probe")
    (probe / "shipml_probe.py").write_text(PROBE)
    path = os.pathsep.join(p for p in (str(probe), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "PYTEST_ADDOPTS": "-p shipml_probe"}
    result = shipml_here(
        "test", "penguins@challenger", "--suite", ",".join(SUITES), cwd=project, env=env
    )
    (project.parent / "mlflow-loaded").write_text((probe / "mlflow-loaded").read_text())
    promoted = shipml_here("promote", "penguins@challenger", cwd=project)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    return project, result.stdout + result.stderr


def test_every_suite_passes_on_the_template_project(tested):
    project, output = tested
    results = json.loads((project / "results" / "results.json").read_text())
    assert results["summary"]["status"] == "passed", output
    for suite in SUITES:
        assert results["suites"][suite]["status"] == "passed", (suite, output)
        assert results["suites"][suite]["passed"] >= 1
    checks = {t["check"] for t in results["tests"] if t["check"]}
    expected = {
        "data.schema",
        "data.leakage",
        "data.skew",
        "model.quality",
        "model.slices",
        "model.invariance",
        "model.directional",
        "api.contract",
        "api.load",
    }
    assert expected <= checks
    assert results["model"]["name"] == "penguins" and results["model"]["version"] == "1"


def test_the_pytest_process_is_handed_the_model_and_never_loads_mlflow(tested):
    """`shipml test` resolves the model (and its name's aliases, for the canary) and hands
    them to pytest's process, which then needs no MLflow (about 1.5 s of CPU a run)."""
    project, output = tested
    assert (project.parent / "mlflow-loaded").read_text() == "False", output


def test_junit_validates_against_the_jenkins_schema_and_counts_equal_pytests(tested):
    project, output = tested
    junit = project / "results" / "junit.xml"
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(junit))
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    summary = re.search(r"^=* ?(\d+ (?:passed|failed).*) in [0-9.]+s", output, re.MULTILINE)
    assert summary, output
    said = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary[1])}
    assert counts["tests"] == sum(said.values())
    assert counts["failures"] == said.get("failed", 0)
    assert counts["skipped"] == said.get("skipped", 0)
    results = json.loads((project / "results" / "results.json").read_text())
    assert results["summary"]["tests"] == counts["tests"]
    assert results["summary"]["passed"] == said["passed"]


def test_report_is_self_contained_and_shows_results_and_plots(tested):
    project, _ = tested
    html = (project / "results" / "report.html").read_text()
    assert "model.slices" in html and "data.schema" in html and "<svg" in html
    if "browser" in SUITES:  # the browser tests' screenshots
        assert html.count('src="data:image/png;base64,') >= 2
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from outside


def test_results_are_attached_to_the_model_version(tested):
    project, _ = tested
    shown = shipml_here("models", "show", "penguins/1", cwd=project, env={"COLUMNS": "500"})
    assert shown.returncode == 0, shown.stderr
    assert "tests    passed" in shown.stdout
    for name in ("junit.xml", "report.html", "results.json"):
        uri = re.search(r"(file://\S+/" + re.escape(name) + ")", shown.stdout)
        assert uri, (name, shown.stdout)
        assert Path(uri[1].removeprefix("file://")).is_file()


def test_api_suite_against_a_server_started_by_hand(tested, tmp_path):
    import subprocess
    import sys

    from tests.conftest import wait_until_ready
    from tests.serving.conftest import free_port

    project, _ = tested
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "shipml", "serve", "penguins/1", "--port", str(port)],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(port)
        url = f"http://127.0.0.1:{port}"
        out = tmp_path / "against"
        ran = shipml_here(
            "test",
            "penguins/1",
            "--against",
            url,
            "--suite",
            "api",
            "-o",
            str(out),
            "--no-export",
            cwd=project,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        results = json.loads((out / "results.json").read_text())
        assert results["against"] == url and results["suites"]["api"]["passed"] >= 5
    finally:
        server.terminate()
        server.wait(timeout=30)
    dead = shipml_here(
        "test",
        "penguins/1",
        "--against",
        url,
        "--suite",
        "api",
        "-o",
        str(out),
        "--no-export",
        cwd=project,
    )
    assert dead.returncode == 1
    results = json.loads((out / "results.json").read_text())
    contract = next(t for t in results["tests"] if t["check"] == "api.contract")
    assert contract["outcome"] == "failed" and "is the server up?" in contract["message"]


def test_score_counts_automated_tests_as_the_paper_does(tested):
    project, _ = tested
    shown = shipml_here("score", "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    score = json.loads(shown.stdout)
    assert score["automated"] >= 20
    assert len(score["tests"]) == 28
    sections = {
        s: sum(t["points"] for t in score["tests"] if t["id"].startswith(s + "-"))
        for s in ("data", "model", "infra", "monitor")
    }
    assert score["sections"] == sections
    assert score["final"] == min(sections.values())


def test_a_challenger_on_shuffled_labels_fails_and_is_not_promoted(tested):
    project, _ = tested
    pipeline = project / "pipeline.py"
    source = pipeline.read_text()
    pipeline.write_text(
        source.replace(
            "    return df.dropna(subset=[TARGET]).reset_index(drop=True)",
            "    df = df.dropna(subset=[TARGET]).reset_index(drop=True)\n"
            "    df[TARGET] = df[TARGET].sample(frac=1.0, random_state=0).to_numpy()\n"
            "    return df",
        )
    )
    try:
        run = shipml_here("run", "--alias", "challenger", cwd=project)
        assert run.returncode == 0, run.stderr
        test = shipml_here("test", "penguins@challenger", "--suite", "data,model", cwd=project)
        assert test.returncode == 1, test.stdout
        results = json.loads((project / "results" / "results.json").read_text())
        assert results["suites"]["model"]["status"] == "failed"
        failed = {t["check"] for t in results["tests"] if t["outcome"] == "failed"}
        assert "model.quality" in failed
        # the canary rehearsal replays the champion's traffic (penguins/1, another version,
        # found through the aliases `shipml test` handed over) and holds this one back
        (canary,) = [t for t in results["tests"] if t["check"] == "model.canary"]
        assert canary["outcome"] == "failed", canary
        assert "the canary against champion penguins/1 did not promote" in canary["message"]

        refused = shipml_here("promote", "penguins@challenger", cwd=project)
        assert refused.returncode == 12, refused.stdout + refused.stderr
        message = " ".join((refused.stdout + refused.stderr).split())
        assert "model.accuracy >= 0.9" in message
        assert re.search(
            r"model\.roc_auc_ovr >= champion - 0\.005: 0\.\d+ \(needs >= "
            r"champion - 0\.005 = 0\.99",
            message,
        ), message
        config = load_config(project)
        registry = Registry(tracker_for(config))
        assert registry.aliases("penguins")["champion"] == "1"

        no_reason = shipml_here("promote", "penguins@challenger", "--force", cwd=project)
        assert no_reason.returncode == 11 and "--reason" in no_reason.stderr
        forced = shipml_here(
            "promote",
            "penguins@challenger",
            "--force",
            "--reason",
            "trial of the override",
            cwd=project,
        )
        assert forced.returncode == 0, forced.stderr
        assert registry.aliases("penguins")["champion"] == "2"
        info = registry.resolve(parse_model_ref("penguins/2"))
        assert info.tags["shipml.promotion.forced"] == "true"
        assert info.tags["shipml.promotion.reason"] == "trial of the override"
        log = open_log(config, writer=False)
        try:
            events = [r for r in log.find_events() if r.get("event") == "promotion"]
        finally:
            log.close()
        assert events[-1]["forced"] is True and events[-1]["reason"] == "trial of the override"
        assert any("model.accuracy" in u for u in events[-1]["unmet_gates"])
    finally:
        pipeline.write_text(source)
