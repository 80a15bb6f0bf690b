"""`shipml serve REF`: resolved once, with the project's settings, without MLflow."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from shipml.config import load_config
from shipml.errors import UnsafeModelError
from shipml.project.serving import plan_serve, serve_spec
from shipml.tracking import registry_for

# The package's project (conftest.two_versions) is made once and its registry changes in
# order: these tests run on one pytest-xdist worker (`--dist loadgroup`).
pytestmark = pytest.mark.xdist_group("project-two-versions")


def test_a_registry_reference_is_served_without_importing_mlflow(two_versions):
    code = (
        "import sys\n"
        "from shipml.config import load_config\n"
        "from shipml.project.serving import plan_serve\n"
        "plan = plan_serve(load_config(), 'penguins@champion')\n"
        "print(plan.spec.name, plan.spec.version, plan.spec.package)\n"
        "assert 'mlflow' not in sys.modules, 'mlflow was imported'\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=two_versions, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    name, version, package = ran.stdout.split()
    champion = registry_for(load_config(two_versions)).aliases("penguins")["champion"]
    assert (name, version) == ("penguins", champion) and package.endswith("/artifacts/model")


def test_the_plan_takes_the_project_settings_and_the_options_win(two_versions):
    config = load_config(two_versions)
    plan = plan_serve(config, "penguins/2", port=0, name="renamed")
    spec = plan.spec
    assert (spec.name, spec.version) == ("renamed", "2") and plan.port == 0
    assert plan.host == config.serving.host and plan.workers == config.serving.workers
    assert spec.max_body_bytes == config.serving.max_body_bytes
    assert spec.audit_path.endswith("audit.db") and len(bytes.fromhex(spec.attestation_key)) == 32


def test_a_pickle_is_refused_and_an_unusable_key_turns_attestation_off(
    two_versions, tmp_path, caplog
):
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04\x95" + b"\x00" * 20)
    config = load_config(two_versions)
    with pytest.raises(UnsafeModelError):
        serve_spec(config, str(pickled))
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where a folder should be")
    config.rollout.attestation_key = str(blocked / "attestation.key")
    with caplog.at_level(logging.WARNING, logger="shipml"):
        spec = serve_spec(config, "penguins/1")
    assert spec.attestation_key == "" and "no variant attestation" in caplog.text
