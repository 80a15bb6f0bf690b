"""[deploy] settings: per-environment tables keep their environment's defaults, env
variables override them, and the plan names images by model version."""

from __future__ import annotations

import pytest

from shipml.config import load_config
from shipml.deploy import make_plan
from shipml.errors import ConfigError, DeployError
from tests.conftest import shipml_here


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


@pytest.mark.parametrize(
    ("registry", "image"),
    [
        ("registry.local:5000/ml/team", "registry.local:5000/ml/team/penguins-serve:1"),
        ("localhost/x", "localhost/x/penguins-serve:1"),
        ("ghcr.io/org", "ghcr.io/org/penguins-serve:1"),
        ("ghcr.io/org/", "ghcr.io/org/penguins-serve:1"),  # as it always rendered
        ("127.0.0.1:5000", "127.0.0.1:5000/penguins-serve:1"),
    ],
)
def test_an_image_registry_of_any_valid_form_names_the_images(deploy_project, registry, image):
    config = load_config(deploy_project, environ={"SHIPML_DEPLOY_IMAGE_REGISTRY": registry})
    assert make_plan(config, "dev").variants[0].image == image
    built = load_config(deploy_project, environ={"SHIPML_CONTAINERS_REGISTRY": registry})
    assert built.containers.registry == image.removesuffix("/penguins-serve:1")


@pytest.mark.parametrize(
    ("registry", "says"),
    [
        ("https://ghcr.io/acme", "has no scheme: drop https://"),
        ("ghcr.io/Acme", "lowercase"),
        ("ghcr.io/acme org", "no spaces"),
        ("", "not empty"),
        ("/", "not empty"),
        ("ghcr.io//acme", "a host, an optional port and path"),
        ("ghcr.io/acme:1.0", "a host, an optional port and path"),
        ("ghcr.io/acme@sha256", "a host, an optional port and path"),
        ("host:port", "a host, an optional port and path"),
        pytest.param("a" * 10_000, "a host, an optional port and path", id="huge"),
    ],
)
def test_an_image_registry_no_image_reference_can_hold_is_a_config_error(
    deploy_project, registry, says
):
    """These rendered as manifests with broken image names (`HTTPS://X/penguins-serve:1`)."""
    for section, key in (("deploy", "image_registry"), ("containers", "registry")):
        if section == "containers" and registry == "":
            continue  # an image named PROJECT-KIND:VERSION, as documented
        var = f"SHIPML_{section.upper()}_{key.upper()}"
        with pytest.raises(ConfigError, match=f"{section}.{key}") as caught:
            load_config(deploy_project, environ={var: registry})
        assert says in caught.value.message and repr(registry[:20])[:-1] in caught.value.message
        assert "HOST[:PORT][/PATH]" in caught.value.message


def test_a_bad_image_registry_is_one_message_on_the_command_line(deploy_project):
    toml = deploy_project / "shipml.toml"
    toml.write_text(
        toml.read_text().replace(
            "[deploy]\n", '[deploy]\nimage_registry = "HTTPS://Ghcr.io/Acme"\n'
        )
    )
    done = shipml_here("deploy", "render", "--env", "dev", cwd=deploy_project)
    assert done.returncode == 3, done.stderr
    assert "deploy.image_registry" in done.stderr and "'HTTPS://Ghcr.io/Acme'" in done.stderr
    assert "drop HTTPS://" in done.stderr and "Traceback" not in done.stderr
    assert not (deploy_project / "deploy").exists()
