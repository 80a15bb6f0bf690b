"""`render`: three environments, strictly valid, and kustomize gives back the same objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.deploy import manifests, render, validation
from shipml.deploy.kustomize import MARKER
from shipml.errors import DeployError, ShipmlError
from tests.conftest import shipml_here
from tests.deploy.conftest import require

WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")


def _pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def test_every_env_is_strictly_valid_and_kustomize_renders_it_unchanged(deploy_project: Path):
    require("kubectl")
    config = load_config(deploy_project)
    result = render(config)
    assert result.kustomize_checked
    assert set(result.objects) == {"dev", "staging", "prod"}
    for env in ("dev", "staging", "prod"):
        built = validation.kustomize(result.overlay(env))
        assert validation.problems(built, config.deploy.kubernetes_version) == []
        assert sorted(map(manifests.key, built)) == sorted(map(manifests.key, result.objects[env]))
        for obj in built:
            assert obj == next(
                o for o in result.objects[env] if manifests.key(o) == manifests.key(obj)
            )
            assert obj["metadata"]["labels"]["shipml.io/env"] == env
            if obj["kind"] != "Namespace":
                assert obj["metadata"]["namespace"] == f"penguins-{env}"
    kinds = {env: {o["kind"] for o in objs} for env, objs in result.objects.items()}
    common = {
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Job",
        "CronJob",
    }
    assert common <= kinds["dev"] and "ServiceMonitor" not in kinds["dev"]
    assert common | {"ServiceMonitor", "PrometheusRule", "StatefulSet"} <= kinds["prod"]
    names = {env: {o["metadata"]["name"] for o in objs} for env, objs in result.objects.items()}
    assert "penguins-challenger" in names["staging"]  # shadow needs the challenger
    assert "penguins-challenger" not in names["dev"] | names["prod"]
    assert {"penguins-mlflow", "penguins-postgres"} <= names["staging"]
    (mlflow,) = [
        o
        for o in result.objects["staging"]
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "penguins-mlflow"
    ]
    env = {e["name"]: e.get("value") for e in _pod_spec(mlflow)["containers"][0]["env"]}
    # MLflow's GenAI job runner (huey consumers) is not started: shipml submits no jobs.
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_ENABLE_TELEMETRY"] == "false"
    # What does not differ between environments lives in the base.
    assert "serviceaccount-penguins.yaml" in result.base
    assert (result.folder / MARKER).is_file()


def test_pods_are_locked_down_probed_and_spread(deploy_project: Path):
    result = render(load_config(deploy_project), check_kustomize=False)
    for obj in result.objects["staging"]:
        if obj["kind"] == "ServiceAccount":
            assert obj["automountServiceAccountToken"] is False
        if obj["kind"] not in WORKLOADS:
            continue
        pod = _pod_spec(obj)
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["allowPrivilegeEscalation"] is False
            assert container["resources"]["limits"] and container["resources"]["requests"]
        if obj["kind"] == "Deployment":
            assert pod["topologySpreadConstraints"]
            assert pod["containers"][0]["readinessProbe"] and pod["containers"][0]["livenessProbe"]
    sizes = {
        env: next(
            o
            for o in objs
            if o["metadata"]["name"] == "penguins-champion"
            and o["kind"] == "HorizontalPodAutoscaler"
        )["spec"]["minReplicas"]
        for env, objs in result.objects.items()
    }
    # The autoscaler owns the replica count; the Deployment does not fight it.
    for obj in result.objects["prod"]:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] != "penguins-mlflow":
            assert "replicas" not in obj["spec"]
    assert sizes == {"dev": 1, "staging": 2, "prod": 3}


def test_the_gateway_policy_is_a_shipml_toml_the_gateway_reads(deploy_project: Path, tmp_path):
    result = render(load_config(deploy_project), ["staging"], check_kustomize=False)
    config_map = next(o for o in result.objects["staging"] if o["kind"] == "ConfigMap")
    (tmp_path / "shipml.toml").write_text(config_map["data"]["shipml.toml"])
    gateway = load_config(tmp_path)
    assert gateway.rollout.mode == "shadow"
    assert gateway.rollout.champion == "champion=http://penguins-champion:8080"
    assert gateway.rollout.challengers == ["challenger=http://penguins-challenger:8080"]
    assert gateway.tracking.uri == "http://penguins-mlflow:5000"
    assert gateway.audit.path.startswith("/var/lib/shipml/")
    # Its tokens come from the optional Secret <project>-gateway-admin, never the ConfigMap.
    deployment = next(
        o
        for o in result.objects["staging"]
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "penguins-gateway"
    )
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in _pod_spec(deployment)["containers"][0]["env"]
    }
    assert env == {
        "SHIPML_ROLLOUT_ADMIN_TOKEN": {
            "name": "penguins-gateway-admin",
            "key": "token",
            "optional": True,
        },
        "SHIPML_ROLLOUT_FEEDBACK_TOKEN": {
            "name": "penguins-gateway-admin",
            "key": "feedback-token",
            "optional": True,
        },
    }


def test_strict_validation_names_unknown_fields():
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "bogus": 1},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "selector": {},
                "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}},
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "m"},
            "spec": {"selector": {}, "endpoints": [{"port": "http", "intervall": "30s"}]},
        },
    ]
    found = [str(p) for p in validation.problems(objects, "1.32")]
    assert any("ServiceAccount/x" in p and "'bogus' was unexpected" in p for p in found)
    assert any("spec.template.spec.containers.0" in p and "'imagee'" in p for p in found)
    assert any("ServiceMonitor/m: spec.endpoints.0" in p and "'intervall'" in p for p in found)
    with pytest.raises(DeployError, match="3 rendered object"):
        validation.validate(objects, "1.32")


def test_invalid_output_is_not_written(deploy_project: Path, monkeypatch):
    """No setting makes shipml emit an unknown field, so one is injected into the builder
    (the only fake here): render must refuse and leave the previous tree untouched."""
    config = load_config(deploy_project)
    first = render(config, ["dev"], check_kustomize=False)
    before = sorted(p.name for p in first.folder.rglob("*"))
    real = manifests.build

    def broken(plan):
        objects = real(plan)
        objects[0]["spec"] = {}
        return objects

    monkeypatch.setattr(manifests, "build", broken)
    with pytest.raises(DeployError, match=r"fail the Kubernetes 1\.32 schema"):
        render(config, check_kustomize=False)
    assert sorted(p.name for p in first.folder.rglob("*")) == before


def test_mistakes_give_actionable_errors(deploy_project: Path, tmp_path: Path):
    config = load_config(deploy_project)
    with pytest.raises(DeployError, match="unknown environment"):
        render(config, ["qa"])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DeployError, match="not rendered by shipml"):
        render(config, ["dev"], foreign, check_kustomize=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    config.deploy.kubernetes_version = "1.12"
    with pytest.raises(DeployError, match="has no schema"):
        render(config, ["dev"])
    config.deploy.kubernetes_version = "1.32"
    config.deploy.object_store = ""
    with pytest.raises(DeployError, match="object_store"):
        render(config, ["staging"])
    config.deploy.champion = "penguins@champion"  # nothing registered yet
    with pytest.raises(DeployError, match=r"cannot deploy penguins@champion"):
        render(config, ["dev"])


def test_a_password_in_a_rendered_url_is_refused(deploy_project: Path, tmp_path: Path):
    """The object store's endpoint is a plain env value in the manifests: credentials in
    it would be readable by anyone who can read the tree (or `kubectl get -o yaml`)."""
    config = load_config(deploy_project)
    config.deploy.object_store_endpoint = "http://minio:hunter2@minio:9000"
    out = tmp_path / "out"
    with pytest.raises(ShipmlError, match="object_store_endpoint has a password") as caught:
        render(config, ["staging"], out, check_kustomize=False)
    assert "hunter2" not in caught.value.message + caught.value.hint
    assert "Secret" in caught.value.hint
    assert not out.exists()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("cpu_limit", "lots", r"\[deploy.dev\] cpu_limit = 'lots' is not a Kubernetes quantity"),
        ("memory_request", "512MB", "memory_request = '512MB' is not a Kubernetes quantity"),
        ("monitor_schedule", "never", "monitor_schedule 'never' is not a cron schedule"),
        ("monitor_schedule", "* * * *", "is not a cron schedule"),
        ("monitor_schedule", "*/5 * * * * ; rm -rf /", "is not a cron schedule"),
    ],
)
def test_sizes_and_schedules_the_api_server_refuses_are_refused_at_render(
    deploy_project: Path, tmp_path: Path, setting: str, value: str, message: str
):
    """The schema takes any string there: these rendered as valid and failed at apply."""
    config = load_config(deploy_project)
    target = config.deploy if setting == "monitor_schedule" else config.deploy.dev
    setattr(target, setting, value)
    out = tmp_path / "out"
    with pytest.raises(DeployError, match=message) as caught:
        render(config, ["dev"], out, check_kustomize=False)
    assert caught.value.hint and not out.exists()


@pytest.mark.parametrize("schedule", ["@hourly", "0 3 * * 1-5", "*/15 * * * *"])
def test_usual_schedules_render(deploy_project: Path, tmp_path: Path, schedule: str):
    config = load_config(deploy_project)
    config.deploy.monitor_schedule = schedule
    config.deploy.dev.cpu_limit, config.deploy.dev.memory_limit = "1.5", "2Gi"
    render(config, ["dev"], tmp_path / "out", check_kustomize=False)


@pytest.mark.parametrize(
    ("output", "where"),
    [
        ("../escaped", "outside"),
        ("deploy/../../escaped", "outside"),
        ("ABSOLUTE", "outside"),
        ("~/escaped", "outside"),
        ("linked", "outside"),  # a symbolic link in the project to a folder out of it
        ("linked/deeper", "outside"),
        (".", "the project folder itself"),
    ],
)
def test_an_output_setting_out_of_the_project_is_refused(
    deploy_project: Path, tmp_path: Path, output: str, where: str
):
    """`[deploy] output` wrote the tree wherever it resolved: a cloned project's
    shipml.toml could make `shipml deploy render` write anywhere the user can."""
    outside = tmp_path / "escaped"
    (deploy_project / "linked").symlink_to(outside, target_is_directory=True)
    outside.mkdir()
    output = output.replace("ABSOLUTE", str(outside))
    toml = deploy_project / "shipml.toml"
    toml.write_text(toml.read_text().replace("[deploy]\n", f"[deploy]\noutput = {output!r}\n"))
    home = {"HOME": str(tmp_path)}  # ~/escaped is the folder outside
    done = shipml_here("deploy", "render", "--env", "dev", cwd=deploy_project, env=home)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"[deploy] output = {output!r} resolves to" in done.stderr
    assert where in done.stderr and "hint: set [deploy] output to a folder inside" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(outside.iterdir()) == []
    assert not (deploy_project / "overlays").exists()


def test_an_output_setting_inside_the_project_and_an_explicit_output_elsewhere_render(
    deploy_project: Path, tmp_path: Path
):
    toml = deploy_project / "shipml.toml"
    toml.write_text(toml.read_text().replace("[deploy]\n", "[deploy]\noutput = 'k8s/./tree'\n"))
    done = shipml_here("deploy", "render", "--env", "dev", cwd=deploy_project)
    assert done.returncode == 0, done.stderr
    assert (deploy_project / "k8s" / "tree" / "overlays" / "dev").is_dir()
    # The command line names a folder on purpose: that one may be anywhere.
    elsewhere = tmp_path / "elsewhere"
    done = shipml_here("deploy", "render", "-e", "dev", "-o", str(elsewhere), cwd=deploy_project)
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "overlays" / "dev").is_dir()
