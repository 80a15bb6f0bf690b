"""`champion` moves only through the one promotion function: every path that could move
it — the registry itself, `shipml promote`, `shipml models alias`, `shipml run --alias`,
the library's run_pipeline — refuses an untested version and leaves the alias where it
was. (The gateway's paths are in test_rollout.py.)"""

from __future__ import annotations

import pytest

from shipml.audit import open_log
from shipml.config import load_config
from shipml.errors import GateFailed, PipelineError, RegistryError, TestingError
from shipml.pipeline import run_pipeline
from shipml.project.promotion import promote, set_alias
from shipml.project.run import run
from shipml.tracking import registry_for
from tests.conftest import shipml

# The package's project (conftest.two_versions) is made once and its registry changes in
# order: these tests run on one pytest-xdist worker (`--dist loadgroup`).
pytestmark = pytest.mark.xdist_group("project-two-versions")


def champion(config) -> str:
    return registry_for(config).aliases("penguins")["champion"]


def test_the_registry_refuses_to_move_a_protected_alias(two_versions):
    config = load_config(two_versions)
    registry = registry_for(config)
    with pytest.raises(RegistryError, match="protected alias"):
        registry.set_alias("penguins", "2", "champion")
    assert champion(config) == "1"
    registry.set_alias("penguins", "2", "challenger")  # an unprotected alias moves


def test_promote_refuses_an_untested_version_and_an_override_without_reason(two_versions):
    config = load_config(two_versions)
    with pytest.raises(GateFailed, match="never tested") as refused:
        promote(config, "penguins@challenger")
    assert [g.name for g in refused.value.details["gates"] if not g.holds] == ["tested"]
    with pytest.raises(TestingError, match="--reason"):
        promote(config, "penguins@challenger", force=True)
    assert champion(config) == "1"


def test_models_alias_moves_a_protected_alias_only_through_the_gates(two_versions):
    config = load_config(two_versions)
    with pytest.raises(GateFailed):
        set_alias(config, "penguins", "2", "champion")
    cli = shipml("models", "alias", "penguins", "2", "champion", cwd=two_versions)
    assert cli.returncode == 12 and "never tested" in cli.stdout, cli.stdout + cli.stderr
    assert champion(config) == "1"
    moved = set_alias(config, "penguins", "2", "staging")
    assert moved.promotion is None and moved.version == "2"
    log = open_log(config, writer=False)
    try:
        events = log.find_events()
    finally:
        log.close()
    assert events[-1]["event"] == "alias" and events[-1]["alias"] == "staging"


def test_run_alias_champion_registers_but_moves_nothing_without_the_gates(two_versions):
    config = load_config(two_versions)
    done = run(config, params={"n_estimators": 50}, alias="champion")  # cached: version 2 again
    assert done.result.model_version is not None and done.result.model_version.version == "2"
    assert isinstance(done.refused, GateFailed) and done.promotion is None
    for alias in ("champion", "CHAMPION", "Champion"):  # a look-alike too, before any run
        with pytest.raises(PipelineError, match="protected alias"):
            run_pipeline(config, alias=alias)
    assert champion(config) == "1"


def test_a_promotion_to_an_alias_no_store_takes_is_refused_before_it_is_recorded(two_versions):
    """A forced promotion to 'latest' (reserved) or 'bad alias!' wrote its audit event,
    then failed to move: the tamper-evident log held a promotion that never happened."""
    config = load_config(two_versions)

    def count() -> int:
        log = open_log(config, writer=False)
        try:
            return len(log.find_events())
        finally:
            log.close()

    before = count()
    for alias in ("latest", "bad alias!", "7"):
        with pytest.raises(RegistryError, match="invalid alias"):
            promote(config, "penguins@challenger", alias=alias, force=True, reason="probe")
    assert count() == before and champion(config) == "1"
