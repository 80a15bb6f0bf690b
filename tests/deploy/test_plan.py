"""[deploy] settings: per-environment tables keep their environment's defaults, env
variables override them, and the plan names images by model version."""

from __future__ import annotations

import pytest

from shipml.config import load_config
from shipml.deploy import make_plan
from shipml.errors import ConfigError, DeployError


def test_env_tables_change_only_what_they_name(deploy_project):
    toml = deploy_project / "shipml.toml"
    toml.write_text(
        toml.read_text().replace("[deploy.staging]\n", "[deploy.staging]\nreplicas = 5\n")
    )
    config = load_config(deploy_project)
    assert config.deploy.staging.replicas == 5 and config.deploy.staging.mode == "shadow"
    assert config.deploy.dev.mode == "single" and config.deploy.prod.replicas == 3
    env = {
        "SHIPML_DEPLOY_PROD": '{"mode": "canary"}',
        "SHIPML_DEPLOY_IMAGE_REGISTRY": "ghcr.io/acme",
    }
    config = load_config(deploy_project, environ=env)
    assert config.deploy.prod.mode == "canary" and config.deploy.prod.replicas == 3
    plan = make_plan(config, "prod")
    assert [(v.name, v.image) for v in plan.variants] == [
        ("champion", "ghcr.io/acme/penguins-serve:1"),
        ("challenger", "ghcr.io/acme/penguins-serve:2"),
    ]
    assert plan.test_image == "ghcr.io/acme/penguins-test:1"
    assert plan.namespace == "penguins-prod"


def test_bad_names_and_unknown_keys_are_refused(deploy_project):
    with pytest.raises(ConfigError, match="SHIPML_DEPLOY_NAMESPACE"):
        load_config(deploy_project, environ={"SHIPML_DEPLOY_NAMESPAC": "x"})
    config = load_config(deploy_project, environ={"SHIPML_DEPLOY_NAMESPACE": "Not_Valid!"})
    with pytest.raises(DeployError, match="cannot name Kubernetes objects"):
        make_plan(config, "dev")
    # A traffic mode is one of a fixed set: refused when the configuration is read.
    with pytest.raises(ConfigError, match=r"deploy\.dev\.mode.*SHIPML_DEPLOY_DEV.*blue-green"):
        load_config(deploy_project, environ={"SHIPML_DEPLOY_DEV": '{"mode": "blue-green"}'})
