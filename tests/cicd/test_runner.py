"""`shipml ci run`: the stages here, in order, stopping at the first failure. Every stage
on the demo project, images and staging on podman: tests/e2e/test_demo.py."""

from __future__ import annotations

from pathlib import Path

from shipml.cicd import run_stages
from shipml.config import load_config
from tests.conftest import shipml


def test_selected_stages_pass_and_the_rest_is_skipped(project: Path):
    result = run_stages(load_config(project), only=["check", "pipeline"])
    assert [(r.name, r.status) for r in result.results] == [
        ("check", "passed"),
        ("pipeline", "passed"),
        ("model-tests", "skipped"),
        ("report", "skipped"),
        ("images", "skipped"),
        ("deploy-staging", "skipped"),
        ("analysis", "skipped"),
        ("promote", "skipped"),
    ]
    assert result.failed is None


def test_the_first_failure_stops_the_run_and_is_named(project: Path):
    (project / "tests" / "test_broken.py").write_text("def test_broken():\n    assert 1 == 2\n")
    done = shipml("ci", "run", cwd=project)
    assert done.returncode == 14
    assert "stage 'check' failed: `shipml ci check` exited with 14" in done.stderr
    assert "pytest failed" in done.stderr
    for later in ("pipeline", "model-tests", "promote"):
        assert any(line.split()[:3] == [later, "not", "run"] for line in done.stdout.splitlines())
    assert "Traceback" not in done.stderr
