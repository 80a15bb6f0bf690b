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


def test_every_model_and_version_is_listed_past_one_page(config: ProjectConfig):
    """MLflow answers a registry search one page at a time (100 registered models): the
    101st model was missing from `shipml models ls` and the dashboard, silently."""
    tracker = tracker_for(config)
    registry = Registry(tracker)
    names = [f"m{i:03d}" for i in range(103)]
    for name in names:
        tracker.client.create_registered_model(name)
    assert registry.model_names() == names
    search = tracker.client.search_model_versions

    def paged(filter_string=None, page_token=None, **kwargs):  # a page of 2 versions
        return search(filter_string=filter_string, max_results=2, page_token=page_token)

    run_id = tracker.start_run("probe", {})
    for digest in "abcde":
        registry.register("m000", run_id=run_id, source="file:///x", content_digest=digest, tags={})
    tracker.client.search_model_versions = paged  # type: ignore[method-assign]
    assert [v.version for v in registry.versions("m000")] == ["1", "2", "3", "4", "5"]
    again, created = registry.register(
        "m000", run_id=run_id, source="file:///x", content_digest="e", tags={}
    )
    assert not created and again.version == "5"  # found on the third page
