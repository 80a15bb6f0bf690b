"""`shipml ci run`: the stages here, in order, stopping at the first failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.cicd import run_stages
from shipml.config import load_config
from tests.conftest import PODMAN, shipml
from tests.serving.conftest import free_port


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


@pytest.mark.xdist_group(PODMAN)  # it builds images
def test_ci_run_on_the_demo_project(tmp_path: Path):
    """`shipml ci init`, then every stage passes on the demo project, with shipml as the
    workflow installs it (images on the offline base, staging on podman); promotion to
    production waits for approval."""
    demo = tmp_path / "demo"
    made = shipml("demo", "--dir", str(demo), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    port = free_port()  # staging's gateway, on podman
    toml = demo / "shipml.toml"
    from shipml.containers import build_base, find_engine

    base = build_base(find_engine("podman")).tag  # offline: no registry on the CI machines
    toml.write_text(
        toml.read_text() + f"\n[deploy.staging]\nhost_port = {port}\n"
        f'\n[ci]\nstaging_gateway = "http://127.0.0.1:{port}"\n'
        f'\n[containers]\nbase_image = "{base}"\n'
    )
    init = shipml("ci", "init", cwd=demo)  # the install line is not edited
    assert init.returncode == 0, init.stderr
    done = shipml("ci", "run", cwd=demo)
    shipml("deploy", "down", "--env", "staging", "--target", "podman", cwd=demo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "promote" in done.stdout and "needs approval" in done.stdout
    # The stages ran with the shipml the workflow's own install line installed.
    assert "$ pip install ./ci/shipml-" in done.stderr
