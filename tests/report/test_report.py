"""`shipml compare` and `shipml report` on two real runs of the template (different
parameters, different data), their HTML opened offline in a real Chromium, and the
report stage of the generated GitHub workflow run locally (`shipml ci run`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from shipml.config import load_config
from shipml.templates import create_project
from shipml.testing.browser import chromium_executable
from shipml.tracking import Registry, tracker_for
from tests.conftest import shipml_here


def open_offline(page_file: Path, shot: Path) -> dict[str, int]:
    """Open a page in headless Chromium with every network request refused; returns what
    it drew and how many requests it tried."""
    from playwright.sync_api import sync_playwright

    path = chromium_executable()
    if path is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("CI needs Chromium for the browser tests")
        pytest.skip("no Chromium")
    tried: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.route(
            "**/*",
            lambda r: (
                (tried.append(r.request.url), r.abort())
                if not r.request.url.startswith("file://")
                else r.continue_()
            ),
        )
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(page_file.as_uri())
        drawn = page.evaluate(
            "() => Array.from(document.querySelectorAll('svg')).filter("
            "s => s.getBoundingClientRect().width > 100 && s.querySelectorAll('path').length > 5"
            ").length"
        )
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    return {"charts": drawn, "requests": len(tried), "errors": len(errors)}


def commit(root: Path, message: str) -> None:
    ident = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", *ident, "commit", "-qm", message], cwd=root, check=True)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = create_project(tmp_path_factory.mktemp("cmp") / "cmp", "cmp")
    assert shipml_here("run", cwd=root).returncode == 0
    toml = (root / "shipml.toml").read_text().replace("n_estimators = 200", "n_estimators = 30")
    (root / "shipml.toml").write_text(toml)
    data = pd.read_csv(root / "data" / "penguins.csv")
    data.iloc[:-20].to_csv(root / "data" / "penguins.csv", index=False)  # other data
    commit(root, "fewer trees, fewer penguins")
    second = shipml_here("run", "--alias", "challenger", cwd=root)
    assert second.returncode == 0, second.stderr
    return root


def test_compare_shows_exactly_the_differences_and_its_html_draws_offline(
    two_runs: Path, tmp_path: Path
) -> None:
    out = shipml_here(
        "compare", "cmp/1", "cmp/2", "--json", "--html", str(tmp_path / "c.html"), cwd=two_runs
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["params"] == {"n_estimators": ["200", "30"]}  # only what differs
    assert result["same_data"] is False
    [(name, digests)] = result["datasets"].items()
    assert name == "penguins" and digests[0] != digests[1]
    assert "n_estimators = 30" in result["code_diff"]  # the commits' diff of shipml.toml
    assert result["deltas"]["accuracy"][0] == 0.0
    seen = open_offline(tmp_path / "c.html", tmp_path / "compare.png")
    assert seen["requests"] == 0 and seen["errors"] == 0
    assert seen["charts"] >= 5  # ROC, PR, calibration, two confusion matrices
    same = shipml_here("compare", "cmp/1", "cmp/1", "--json", cwd=two_runs)
    assert json.loads(same.stdout)["params"] == {}
    bad = shipml_here("compare", "cmp/1", "nope/9", cwd=two_runs)
    assert bad.returncode == 7 and "Traceback" not in bad.stderr
    bad = shipml_here("compare", "cmp/1", "'; DROP TABLE runs;--", cwd=two_runs)
    assert bad.returncode == 7 and "cannot read the model reference" in bad.stderr
    skipped = shipml_here("compare", "cmp@champion", "cmp/1", "--skip-missing", cwd=two_runs)
    assert skipped.returncode == 0 and "nothing to compare" in skipped.stdout


HOSTILE = "[/oops] </script><script>alert(1)</script><img src=x onerror=alert(2)>\u202e"


def test_compare_shows_a_hostile_run_as_text_and_nan_as_null(two_runs: Path, tmp_path) -> None:
    """A run anyone with the tracking server can write: markup in its parameters and
    commit tag is text in the terminal (Rich raised MarkupError) and in the page, and a
    NaN metric is null in --json (it printed NaN, which JSON parsers refuse)."""
    from html.parser import HTMLParser

    client = tracker_for(load_config(two_runs)).client
    run = client.create_run(client.get_experiment_by_name("cmp").experiment_id, run_name=HOSTILE)
    rid = run.info.run_id
    client.log_param(rid, "n_estimators", HOSTILE)
    client.log_metric(rid, "accuracy", float("nan"))
    client.set_tag(rid, "mlflow.source.git.commit", "[/y]" + HOSTILE)
    client.set_terminated(rid)
    page = tmp_path / "[/z] c.html"
    out = shipml_here("compare", "cmp/1", rid, "--html", str(page), cwd=two_runs)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "commits:" in out.stdout and "[/y]" in out.stdout and str(page) in out.stdout
    as_json = shipml_here("compare", "cmp/1", rid, "--json", cwd=two_runs)
    result = json.loads(as_json.stdout, parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    assert result["metrics"]["accuracy"][1] is None and result["deltas"]["accuracy"][1] is None

    seen: set[str] = set()

    class Elements(HTMLParser):
        def handle_starttag(self, tag: str, attrs: object) -> None:
            seen.add(tag)

    Elements().feed(page.read_text())
    assert not seen & {"script", "img"} and "alert(1)" in page.read_text()


def test_the_model_card_opens_offline_and_is_attached(two_runs: Path, tmp_path: Path) -> None:
    out = shipml_here("report", "cmp@challenger", "-o", str(tmp_path / "card.html"), cwd=two_runs)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "card.html").read_text()
    for heading in (
        "Purpose",
        "Data",
        "Training parameters",
        "95% interval",
        "Lineage",
        "Known limits",
    ):
        assert heading in text
    seen = open_offline(tmp_path / "card.html", tmp_path / "card.png")
    assert seen["requests"] == 0 and seen["errors"] == 0 and seen["charts"] >= 1
    version = Registry(tracker_for(load_config(two_runs))).resolve("cmp@challenger")
    assert version.tags["shipml.report"].endswith(f"report/{version.version}/model-card.html")


def test_the_github_workflow_publishes_the_report_in_its_job_summary(two_runs: Path) -> None:
    assert shipml_here("ci", "init", "--provider", "github", cwd=two_runs).returncode == 0
    workflow = (two_runs / ".github" / "workflows" / "shipml.yml").read_text()
    assert "--summary" in workflow and "actions/upload-artifact" in workflow
    ran = shipml_here("ci", "run", "--stage", "report", cwd=two_runs)
    assert ran.returncode == 0, ran.stdout[-2000:]
    summary = (two_runs / "results" / "ci-summary.md").read_text()
    assert "## Model card: cmp/2" in summary and "| accuracy |" in summary
    assert (two_runs / "results" / "model-card.html").is_file()


def test_compare_refuses_more_subjects_than_a_page_shows(tmp_path: Path) -> None:
    """10,000 run ids read every run (and ran a git diff per commit) for minutes, into a
    table of 10,000 columns: refused at once, before the store is opened."""
    from shipml.report.compare import MAX_SUBJECTS

    refs = [f"{i:032x}" for i in range(10_000)]
    out = shipml_here("compare", *refs, "--html", str(tmp_path / "c.html"), cwd=tmp_path)
    assert out.returncode == 7 and "Traceback" not in out.stderr, out.stderr
    assert f"at most {MAX_SUBJECTS} runs or models (10,000 given)" in out.stderr
    assert not (tmp_path / "c.html").exists()


def test_the_code_diff_stops_at_what_it_shows(tmp_path: Path, monkeypatch) -> None:
    """Each other commit ran a git diff even once the shown text was full."""
    from types import SimpleNamespace

    from shipml.report import compare

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commits = []
    for i in range(4):
        (tmp_path / "m.py").write_text(f"x = {i}\n" * (compare.MAX_DIFF_CHARS // 4))
        commit(tmp_path, f"c{i}")
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True)
        commits.append(head.stdout.decode().strip())
    runs: list[list[str]] = []
    real = subprocess.run
    monkeypatch.setattr(compare.subprocess, "run", lambda a, **k: runs.append(a) or real(a, **k))
    diff = compare.code_diff(SimpleNamespace(root=tmp_path), commits)  # type: ignore[arg-type]
    assert len(diff) == compare.MAX_DIFF_CHARS and len(runs) == 1
