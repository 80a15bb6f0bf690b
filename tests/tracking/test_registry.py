"""The registry in process: what MLflow refuses is a TrackingError naming the call."""

from __future__ import annotations

import pytest

from shipml.config import ProjectConfig
from shipml.errors import RegistryError, TrackingError
from shipml.tracking import Registry, tracker_for


def test_a_call_mlflow_refuses_is_a_tracking_error_not_a_traceback(config: ProjectConfig):
    tracker = tracker_for(config)
    registry = Registry(tracker)
    run_id = tracker.start_run("probe", {})
    info, created = registry.register(
        "penguins", run_id=run_id, source="file:///nowhere", content_digest="d", tags={}
    )
    assert created and info.version == "1"
    with pytest.raises(TrackingError, match=r"set_version_tag: MlflowException: .*bad@key"):
        registry.set_version_tag("penguins", "1", "bad@key", "v")
    with pytest.raises(TrackingError, match=r"log_params: MlflowException"):
        tracker.log_params("0" * 32, {"alpha": 1})  # no such run


def test_an_alias_that_differs_from_a_protected_one_only_in_case_is_refused(
    config: ProjectConfig,
):
    """A case-insensitive store (MySQL) would move champion itself; elsewhere CHAMPION is a
    look-alike that `shipml models alias` could set past the gates."""
    tracker = tracker_for(config)
    registry = Registry(tracker)
    run_id = tracker.start_run("probe", {})
    registry.register("penguins", run_id=run_id, source="file:///x", content_digest="d", tags={})
    for alias in ("CHAMPION", "Champion"):
        with pytest.raises(RegistryError, match="only in case"):
            registry.set_alias("penguins", "1", alias)
    assert registry.aliases("penguins") == {}
    registry.set_alias("penguins", "1", "challenger")  # an unprotected alias still moves


def test_a_model_another_run_registers_meanwhile_is_used(config: ProjectConfig):
    """Two first runs at once: both find no registered model, both create it."""
    tracker = tracker_for(config)
    registry = Registry(tracker)
    run_id = tracker.start_run("probe", {})
    create = tracker.client.create_registered_model

    def beaten_to_it(name: str, *args: object, **kwargs: object) -> object:
        create(name)  # the other run
        return create(name)  # MLflow: "Registered Model (name=penguins) already exists"

    tracker.client.create_registered_model = beaten_to_it  # type: ignore[method-assign]
    info, created = registry.register(
        "penguins", run_id=run_id, source="file:///x", content_digest="d", tags={}
    )
    assert created and info.version == "1"
