"""`[tune] workers`: the tuning Jobs `shipml deploy render` emits, strictly valid, and the
refusal when their pods could not share one study."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.deploy import render
from shipml.errors import ConfigError, ShipmlError

PG = "postgresql+psycopg://shipml@db.example.com:5432/shipml"


def _jobs(objects: list[dict]) -> dict[str, dict]:
    tune = [o for o in objects if o["metadata"]["labels"].get("app.kubernetes.io/component")]
    return {
        o["metadata"]["name"]: o
        for o in tune
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == "tune"
    }


def _env(job: dict) -> dict[str, dict]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def _set(project: Path, tracking: str, tune: str) -> None:
    toml = project / "shipml.toml"
    text = toml.read_text().replace('uri = "sqlite:///.shipml/mlflow.db"', f'uri = "{tracking}"')
    if "budget" in tune:
        text = text.replace('budget = "10m"\n', "")
    toml.write_text(text.replace("[tune]\n", f"[tune]\n{tune}\n", 1))


def test_workers_render_a_worker_job_and_a_lead_job(deploy_project: Path, tmp_path: Path):
    _set(deploy_project, PG, 'workers = 2\nstudy = "wide"\nbudget = "20m"')
    config = load_config(deploy_project)
    result = render(config, output=tmp_path / "out")  # schema-checked (and kustomize's)
    for env in ("dev", "staging", "prod"):
        jobs = _jobs(result.objects[env])
        assert set(jobs) == {"penguins-tune", "penguins-tune-workers"}
        workers, lead = jobs["penguins-tune-workers"], jobs["penguins-tune"]
        assert workers["spec"]["parallelism"] == workers["spec"]["completions"] == 2
        assert lead["spec"]["parallelism"] == lead["spec"]["completions"] == 1
        assert lead["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 900
        args = ["--study", "wide", "--budget", "20m"]
        for job, command in (
            (workers, ["shipml", "tune", "--worker", *args]),
            (lead, ["shipml", "tune", *args]),
        ):
            pod = job["spec"]["template"]["spec"]
            c = pod["containers"][0]
            assert c["command"] == command
            assert c["image"] == "localhost/penguins-train:latest"
            assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["runAsNonRoot"]
            assert c["resources"]["limits"] and c["resources"]["requests"]
            assert pod["restartPolicy"] == "Never"
            assert job["spec"]["activeDeadlineSeconds"] == 20 * 60 + 1800
        env = _env(lead)
        password = env["DB_PASSWORD" if env.get("DB_PASSWORD") else "PGPASSWORD"]
        assert password["valueFrom"]["secretKeyRef"]["name"] == "penguins-mlflow-db"
    dev = _env(_jobs(result.objects["dev"])["penguins-tune"])
    # Without team mode the pods use the project's PostgreSQL, its password a Secret's.
    assert dev["SHIPML_TRACKING_URI"]["value"] == PG and "SHIPML_TUNE_STORAGE" not in dev
    assert "PGPASSWORD" in dev
    # Team mode: the tracking server over HTTP, the study in its PostgreSQL.
    prod = _env(_jobs(result.objects["prod"])["penguins-tune"])
    assert prod["SHIPML_TRACKING_URI"]["value"] == "http://penguins-mlflow:5000"
    assert prod["SHIPML_TUNE_STORAGE"]["value"] == (
        "postgresql+psycopg://mlflow:$(DB_PASSWORD)@penguins-postgres:5432/mlflow"
    )
    db_policy = next(
        o
        for o in result.objects["prod"]
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "penguins-postgres"
    )
    allowed = db_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][1]
    assert allowed["values"] == ["mlflow", "tune"]


def test_no_workers_no_tuning_jobs(deploy_project: Path, tmp_path: Path):
    result = render(load_config(deploy_project), ["dev"], tmp_path / "o", check_kustomize=False)
    assert _jobs(result.objects["dev"]) == {}


@pytest.mark.parametrize(
    ("tracking", "tune", "message"),
    [
        ("sqlite:///.shipml/mlflow.db", "workers = 2", "a SQLite file beside"),
        ("http://mlflow.example.com", "workers = 2", "a SQLite file in each pod"),
        (PG, 'workers = 2\nstorage = "sqlite:///s.db"', "storage 'sqlite:///s.db'"),
        ("postgresql://u:hunter2@db/x", "workers = 2", "has a password in it"),
        # [tune] storage without a password: the Jobs still get [tracking] uri as a value
        (
            "postgresql://u:hunter2@db/x",
            'workers = 2\nstorage = "postgresql://u@db/optuna"',
            "tracking.*has a password in it",
        ),
        (
            "https://u:hunter2@mlflow.example.com",
            'workers = 2\nstorage = "postgresql://u@db/optuna"',
            "tracking.*has a password in it",
        ),
        (PG, 'workers = 2\nstorage = "postgresql://u:hunter2@db/optuna"', "storage.*password"),
    ],
)
def test_workers_without_a_shared_database_are_refused(
    deploy_project: Path, tmp_path: Path, tracking: str, tune: str, message: str
):
    _set(deploy_project, tracking, tune)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message) as caught:
        render(load_config(deploy_project), ["dev"], out, check_kustomize=False)
    assert "team_mode" in caught.value.hint or "Secret" in caught.value.hint
    assert "hunter2" not in caught.value.message + caught.value.hint
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize(
    "bad", ["workers = -1", "workers = 65", 'workers = "two"', "workers = 1.5"]
)
def test_bad_worker_counts_are_config_errors(deploy_project: Path, bad: str):
    _set(deploy_project, PG, bad)
    with pytest.raises(ShipmlError, match="workers"):
        load_config(deploy_project)


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ('workers = 2\nstudy = "x; rm -rf /"', "cannot name the tuning Jobs' study"),
        ('workers = 2\nstudy = "' + "s" * 5000 + '"', "cannot name the tuning Jobs' study"),
        ('workers = 2\nbudget = "ten minutes"', "ten minutes"),
    ],
)
def test_bad_study_or_budget_is_refused_at_render(
    deploy_project: Path, tmp_path: Path, tune: str, message: str
):
    _set(deploy_project, PG, tune)
    with pytest.raises(ShipmlError, match=message) as caught:
        render(load_config(deploy_project), ["dev"], tmp_path / "o", check_kustomize=False)
    assert len(caught.value.message) < 400 and caught.value.hint
