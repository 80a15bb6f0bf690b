"""`shipml deploy render` from the command line: output, and mistakes without tracebacks."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import shipml_here
from tests.deploy.conftest import DEPLOY_TOML, require


def test_render_prints_each_env_and_the_checks(project: Path):
    require("kubectl")
    toml = project / "shipml.toml"
    toml.write_text(toml.read_text() + DEPLOY_TOML)
    done = shipml_here("deploy", "render", cwd=project)
    assert done.returncode == 0, done.stderr
    for env in ("dev", "staging", "prod"):
        assert f"{env}: " in done.stdout and (project / "deploy" / "overlays" / env).is_dir()
    assert "shadow (champion penguins/1, challenger penguins/2)" in done.stdout
    assert "valid against Kubernetes 1.32 (strict)" in done.stdout
    assert "kubectl kustomize" in done.stdout
    one = shipml_here("deploy", "render", "--env", "dev", "-o", "k8s", cwd=project)
    assert one.returncode == 0 and sorted(p.name for p in (project / "k8s/overlays").iterdir()) == [
        "dev"
    ]


def test_mistakes_exit_13_with_a_hint(project: Path):
    no_model = shipml_here("deploy", "render", "--env", "dev", cwd=project)
    assert no_model.returncode == 13
    assert "cannot deploy penguins@champion" in no_model.stderr and "hint:" in no_model.stderr
    env = {"SHIPML_DEPLOY_KUBERNETES_VERSION": "1.99", "SHIPML_DEPLOY_CHAMPION": "penguins/1"}
    version = shipml_here("deploy", "render", cwd=project, env=env)
    assert version.returncode == 13 and "'1.99' has no schema" in version.stderr
    target = shipml_here(
        "deploy",
        "apply",
        "--target",
        "nomad",
        cwd=project,
        env={"SHIPML_DEPLOY_CHAMPION": "penguins/1"},
    )
    assert target.returncode == 13 and "unknown target 'nomad'" in target.stderr
    for done in (no_model, version, target):
        assert "Traceback" not in done.stderr
    toml = project / "shipml.toml"
    toml.write_text(toml.read_text() + "\n[deploy.staging]\nreplicaz = 3\n")
    typo = shipml_here("deploy", "render", cwd=project)
    assert typo.returncode == 3 and "did you mean 'replicas'?" in typo.stderr
