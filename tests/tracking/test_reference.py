"""One resolver for every command: the light read of the embedded registry names the
same package as MLflow, and anything it cannot be sure of is left to MLflow."""

from __future__ import annotations

import pytest

from shipml.config import ProjectConfig, load_config
from shipml.errors import ConfigError, RegistryError
from shipml.templates import create_project
from shipml.tracking import registry_for, resolve_model
from shipml.tracking.reference import _sqlite_lookup
from shipml.tracking.registry import parse_model_ref


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    """One store for the module (the last test changes it)."""
    return load_config(create_project(tmp_path_factory.mktemp("ref") / "penguins", "penguins"))


@pytest.fixture(scope="module")
def registered(config: ProjectConfig, tmp_path_factory: pytest.TempPathFactory):
    """Two versions of ``penguins`` whose sources are local package folders."""
    tmp_path = tmp_path_factory.mktemp("packages")
    registry = registry_for(config)
    run_id = registry.tracker.start_run("probe", {})
    folders = []
    for n in (1, 2):
        folder = tmp_path / f"pkg{n}"
        folder.mkdir()
        (folder / "package.json").write_text("{}")
        registry.register(
            "penguins", run_id=run_id, source=folder.as_uri(), content_digest=f"d{n}", tags={}
        )
        folders.append(folder)
    registry.set_alias("penguins", "2", "challenger")
    return registry, folders


def test_the_light_read_and_mlflow_name_the_same_package(config, registered):
    _, folders = registered
    for ref, version, folder in (
        ("penguins@challenger", "2", folders[1]),
        ("penguins/1", "1", folders[0]),
    ):
        light = _sqlite_lookup(config.registry_uri, parse_model_ref(ref))
        full = resolve_model(config, ref, full=True)
        assert light is not None and light.path == full.path == folder
        assert (light.name, light.version) == (full.name, full.version) == ("penguins", version)
        assert full.info is not None and full.info.version == version
        assert light.ref == f"penguins/{version}" and light.registered


def test_what_the_light_read_cannot_be_sure_of_goes_to_mlflow(config, registered):
    registry, folders = registered
    assert _sqlite_lookup(config.registry_uri, parse_model_ref("penguins@nope")) is None
    assert _sqlite_lookup(config.registry_uri, parse_model_ref("nobody/1")) is None
    assert _sqlite_lookup("postgresql://x/y", parse_model_ref("penguins/1")) is None
    with pytest.raises(RegistryError, match="has no alias 'nope'"):  # MLflow's own message
        resolve_model(config, "penguins@nope")
    registry.client.delete_model_version("penguins", "1")
    assert _sqlite_lookup(config.registry_uri, parse_model_ref("penguins/1")) is None
    with pytest.raises(RegistryError, match="has no version 1"):
        resolve_model(config, "penguins/1")
    folders[1].rename(folders[1].with_name("moved"))  # a source that is gone
    assert _sqlite_lookup(config.registry_uri, parse_model_ref("penguins/2")) is None


def test_a_folder_needs_no_project_and_a_registry_reference_does(tmp_path):
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "package.json").write_text("{}")
    found = resolve_model(None, str(folder))
    assert (found.path, found.name, found.version, found.registered) == (
        folder.resolve(),
        "pkg",
        "1",
        False,
    )
    with pytest.raises(ConfigError, match="no project here"):
        resolve_model(None, "penguins@champion")
