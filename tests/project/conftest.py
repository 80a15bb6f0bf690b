"""A real project with two registered versions: 1 is the champion (put there by a
recorded override), 2 is an untested challenger. Its gates ask for test results and a
passing data suite (the model suite and its latency budget have their own tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.project.promotion import promote
from shipml.project.run import run
from shipml.templates import create_project

FEEDBACK_TOKEN = "label-t0ken"
ADMIN_TOKEN = "adm1n-t0ken"


@pytest.fixture(scope="package")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = create_project(tmp_path_factory.mktemp("promo") / "penguins", "penguins")
    toml = folder / "shipml.toml"
    text = toml.read_text()
    text = text[: text.index("[gates]")] + (
        '[gates]\nsuites = ["data"]\n\n'
        "[rollout]\n"
        f'admin_token = "{ADMIN_TOKEN}"\nfeedback_token = "{FEEDBACK_TOKEN}"\n'
    )
    toml.write_text(text)
    config = load_config(folder)
    run(config, alias="challenger")
    promote(config, "penguins/1", force=True, reason="the first champion (a test fixture)")
    second = run(config, params={"n_estimators": 50}, alias="challenger")
    assert second.result.model_version is not None
    assert second.result.model_version.version == "2"
    return folder
