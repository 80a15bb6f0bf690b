"""The plugin's results.json counts what pytest and junit.xml count, edge cases included."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import xmlschema

SCHEMA = Path(__file__).with_name("junit-10.xsd")

TESTS = """
import pytest

@pytest.fixture
def breaks_on_teardown():
    yield
    raise RuntimeError("teardown broke")

def test_passes():
    assert True

def test_fails_then_teardown_errors(breaks_on_teardown):
    assert 1 == 2

def test_passes_then_teardown_errors(breaks_on_teardown):
    assert True

@pytest.fixture
def breaks_on_setup():
    raise RuntimeError("setup broke")

def test_setup_errors(breaks_on_setup):
    pass

def test_skips():
    pytest.skip("not here")

@pytest.mark.xfail(reason="known")
def test_xfails():
    assert False
"""


def test_counts_match_junit_with_setup_and_teardown_errors(tmp_path: Path):
    (tmp_path / "shipml.toml").write_text('[project]\nname = "p"\n')
    (tmp_path / "test_edge.py").write_text(TESTS)
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "test_edge.py",
            "-p",
            "shipml.testing.plugin",
            "-p",
            "no:cacheprovider",
            "--shipml-results",
            str(out),
            f"--junitxml={out}/j.xml",
            "-o",
            "junit_family=xunit2",
            "-q",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(out / "j.xml"))
    root = ET.parse(out / "j.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    assert summary["tests"] == int(suite.get("tests", 0))
    assert summary["failed"] == int(suite.get("failures", 0))
    assert summary["error"] == int(suite.get("errors", 0))
    assert summary["skipped"] == int(suite.get("skipped", 0))
    assert summary["error"] == 3 and summary["failed"] == 1  # setup, 2 teardowns; 1 failure


HOSTILE = '''
import math
import pytest

EVIL = "<script>alert(1)</script>\\x00\\x1b[31m\\ud800"

@pytest.mark.parametrize("feature", ["<img src=x onerror=alert(2)>"])
def test_hostile(feature, record_metric):
    """<script>alert(3)</script> in a docstring"""
    record_metric("not_a_number", math.nan)
    record_metric("too_big", math.inf)
    assert feature == EVIL
'''


def _no_nan(name: str) -> None:
    raise ValueError(f"results.json holds {name}, which JSON does not allow")


def test_hostile_names_and_messages_and_nan_metrics_make_valid_reports(tmp_path: Path):
    """A test id, docstring and message full of markup and XML-invalid characters, and
    metrics that are NaN or infinite: junit.xml validates, report.html runs no script,
    results.json is strict JSON (null for a non-finite number)."""
    (tmp_path / "shipml.toml").write_text('[project]\nname = "p"\n')
    (tmp_path / "test_hostile.py").write_text(HOSTILE)
    out = tmp_path / "out"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "test_hostile.py", "-p", "shipml.testing.plugin"),
            *("-p", "no:cacheprovider", "--shipml-results", str(out), f"--junitxml={out}/j.xml"),
            *("-o", "junit_family=xunit2", "-q"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(out / "j.xml"))
    results = json.loads((out / "results.json").read_text(), parse_constant=_no_nan)
    assert results["metrics"] == {"unit.not_a_number": None, "unit.too_big": None}
    page = (out / "report.html").read_text()
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(3)" in page  # shown, as text


def test_a_configured_check_deselected_by_addopts_fails_its_suite(tmp_path: Path):
    """`addopts = --deselect ...` (or -k) in the project's pytest settings would leave a
    failing check out and its suite 'passed': what `shipml test` asks for must run."""
    (tmp_path / "shipml.toml").write_text('[project]\nname = "p"\n')
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = --deselect shipml.toml::data::nulls -k 'not duplicates'\n"
    )
    out = tmp_path / "out"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "shipml.toml", "-p", "shipml.testing.plugin"),
            *("-p", "no:cacheprovider", "--shipml-results", str(out), "--shipml-suites"),
            *("data", "-m", "data", "-q"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    results = json.loads((out / "results.json").read_text())
    unrun = {t["check"] for t in results["tests"] if t["outcome"] == "error"}
    assert unrun == {"data.nulls", "data.duplicates"}
    assert results["suites"]["data"]["status"] == "failed"
    assert "did not run" in (out / "report.html").read_text()
