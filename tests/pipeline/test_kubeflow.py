"""The Kubeflow compiler: the YAML loads back with the kfp SDK and has the local DAG."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from shipml.config import load_config
from shipml.errors import PipelineError
from shipml.pipeline import load_pipeline
from shipml.pipeline.kubeflow import (
    REGISTER,
    compile_pipeline,
    load_tasks,
    rehearse,
    submit,
    task_name,
)
from tests.conftest import shipml

DIAMOND = """
from shipml import pipeline, step

@step
def load_rows():
    return [1, 2, 3]

@step(outputs=("left", "right"))
def fork(rows):
    return rows[:1], rows[1:]

@step(cache=False)
def measure(part):
    return len(part)

@step
def join(a, b):
    return a + b

@pipeline
def diamond():
    left, right = fork(load_rows())
    join(measure(left), measure(right))
"""


def _expected(config) -> dict[str, list[str]]:
    graph = load_pipeline(config).build(config.pipeline.params)
    return {task_name(n.name): sorted(task_name(u) for u in n.upstream) for n in graph.nodes}


def test_template_pipeline_has_one_task_per_step_with_the_local_dependencies(project, tmp_path):
    config = load_config(project, environ={"SHIPML_ARTIFACTS_ROOT": "s3://models/penguins"})
    out = tmp_path / "pipeline.yaml"
    compiled = compile_pipeline(config, out)
    assert load_tasks(out) == _expected(config)
    assert set(compiled.tasks) == {"ingest", "validate", "split", "train", "evaluate", "package"}
    spec = yaml.safe_load(out.read_text())
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["image"] == "localhost/penguins-train:latest"
    assert train["command"][:4] == ["shipml", "step", "run", "train"]
    assert {"name": "SHIPML_ARTIFACTS_ROOT", "value": "s3://models/penguins"} in train["env"]
    assert "n_estimators=200" in train["command"]  # pipeline params reach every step


def test_names_caching_and_resources_map_to_kfp_options(project, tmp_path):
    (project / "pipeline.py").write_text(DIAMOND)
    toml = project / "shipml.toml"
    text = toml.read_text().replace('name = "training"', 'name = "diamond"')
    text = text.replace("[pipeline.params]\ntest_size = 0.25\nn_estimators = 200\n", "")
    toml.write_text(
        text
        + textwrap.dedent("""
        [kubeflow]
        image = "registry.example/penguins-train:7"
        [kubeflow.resources.fork]
        cpu_limit = "2"
        memory_limit = "4Gi"
        """)
    )
    config = load_config(project, environ={"SHIPML_ARTIFACTS_ROOT": "s3://b/p"})
    out = tmp_path / "diamond.yaml"
    compile_pipeline(config, out)
    tasks = load_tasks(out)
    assert tasks == _expected(config)
    assert tasks["join"] == ["measure", "measure-2"]
    assert tasks["measure-2"] == ["fork"]
    spec = yaml.safe_load(out.read_text())
    dag = spec["root"]["dag"]["tasks"]
    assert dag["measure"]["cachingOptions"] == {}  # cache=False: caching off
    assert dag["fork"]["cachingOptions"] == {"enableCache": True}
    resources = spec["deploymentSpec"]["executors"]["exec-fork"]["container"]["resources"]
    assert resources["resourceCpuLimit"] == "2" and resources["resourceMemoryLimit"] == "4Gi"


def test_a_local_artifact_root_or_unknown_resources_are_refused(project, tmp_path):
    with pytest.raises(PipelineError, match="cannot share"):
        compile_pipeline(load_config(project), tmp_path / "p.yaml")
    config = load_config(
        project,
        environ={"SHIPML_ARTIFACTS_ROOT": "s3://b/p", "SHIPML_KUBEFLOW_RESOURCES": '{"trian": {}}'},
    )
    with pytest.raises(PipelineError, match="unknown steps"):
        compile_pipeline(config, tmp_path / "p.yaml")


def test_submit_to_an_endpoint_that_does_not_answer_is_a_clear_error(project, tmp_path):
    from tests.serving.conftest import free_port

    config = load_config(project, environ={"SHIPML_ARTIFACTS_ROOT": "s3://b/p"})
    out = compile_pipeline(config, tmp_path / "p.yaml").path
    with pytest.raises(PipelineError, match=r"cannot submit p\.yaml"):
        submit(out, f"http://127.0.0.1:{free_port()}")


def test_cli_compile(project: Path):
    done = shipml(
        "pipeline",
        "compile",
        "-o",
        "kfp/pipeline.yaml",
        cwd=project,
        env={"SHIPML_ARTIFACTS_ROOT": "s3://models/penguins"},
    )
    assert done.returncode == 0, done.stderr
    assert "6 tasks" in done.stdout and (project / "kfp" / "pipeline.yaml").is_file()
    # The template's SQLite store is a file the pods cannot share: no register task, and
    # compiling says so (docs/kubeflow.md), as `pipeline rehearse` does.
    assert "no model registered" in done.stdout and "[tracking] uri" in done.stdout
    # the template's image is :latest: KFP's cache is off, and compiling says why
    assert "Kubeflow caching off: image localhost/penguins-train:latest is not pinned" in (
        " ".join(done.stdout.split())
    )
    refused = shipml("pipeline", "compile", "--target", "airflow", cwd=project)
    assert refused.returncode == 6 and "unknown target 'airflow'" in refused.stderr


def test_a_shared_tracking_store_adds_the_register_task_after_the_last_steps(project, tmp_path):
    env = {"SHIPML_ARTIFACTS_ROOT": "s3://b/p", "SHIPML_TRACKING_URI": "http://mlflow:5000"}
    config = load_config(project, environ=env)
    compiled = compile_pipeline(config, tmp_path / "p.yaml")
    assert compiled.registers
    tasks = load_tasks(compiled.path)
    assert tasks.pop(REGISTER) == ["evaluate", "package"]  # the steps nothing else reads
    assert tasks == _expected(config)
    spec = yaml.safe_load(compiled.path.read_text())
    register = spec["deploymentSpec"]["executors"][f"exec-{REGISTER}"]["container"]
    assert register["command"][:3] == ["shipml", "step", "register"]
    assert {"name": "SHIPML_TRACKING_URI", "value": "http://mlflow:5000"} in register["env"]
    # A password in the tracking URI would be written into the file: refused.
    env["SHIPML_TRACKING_URI"] = "postgresql://u:hunter2@db/mlflow"
    with pytest.raises(PipelineError, match="holds a password"):
        compile_pipeline(load_config(project, environ=env), tmp_path / "q.yaml")
    assert not (tmp_path / "q.yaml").exists()


def test_rehearse_without_an_engine_says_how_to_start_one(project, tmp_path):
    config = load_config(project, environ={"SHIPML_ARTIFACTS_ROOT": "s3://b/p"})
    compiled = compile_pipeline(config, tmp_path / "p.yaml")
    with pytest.raises(PipelineError, match="no Docker-compatible engine answers") as err:
        rehearse(compiled.path, tmp_path / "root", docker_host=f"unix://{tmp_path}/none.sock")
    assert "podman system service" in (err.value.hint or "")


def test_step_register_refuses_missing_or_foreign_manifests(project: Path):
    done = shipml("step", "register", cwd=project)
    assert done.returncode == 6 and "no manifests given" in done.stderr
    done = shipml("step", "register", "--input", "s3://elsewhere/m.json", cwd=project)
    assert done.returncode == 6 and "not in this project's artifact store" in done.stderr
    assert "Traceback" not in done.stderr


NAMES = """
from shipml import pipeline, step

@step
def nettoyé():
    return [1]

@step(name="{second}")
def other():
    return [2]

@step
def after(a, b):
    return a + b

@pipeline
def names():
    after(nettoyé(), other())
"""


def _names_project(project: Path, second: str):
    (project / "pipeline.py").write_text(NAMES.replace("{second}", second), encoding="utf-8")
    toml = project / "shipml.toml"
    text = toml.read_text().replace('name = "training"', 'name = "names"')
    toml.write_text(text.replace("[pipeline.params]\ntest_size = 0.25\nn_estimators = 200\n", ""))
    return load_config(project, environ={"SHIPML_ARTIFACTS_ROOT": "s3://b/p"})


def test_unicode_step_names_compile_and_colliding_task_names_are_refused(project, tmp_path):
    # kfp renamed the input 'nettoyé_manifest' and the task call failed with a TypeError
    # traceback; 'Prep' and 'prep' (one task name, 'prep') raised kfp's ValueError
    config = _names_project(project, "Other")
    out = tmp_path / "names.yaml"
    compile_pipeline(config, out)
    assert load_tasks(out) == {"nettoy": [], "other": [], "after": ["nettoy", "other"]}
    spec = yaml.safe_load(out.read_text(encoding="utf-8"))
    command = spec["deploymentSpec"]["executors"]["exec-after"]["container"]["command"]
    assert "{{$.inputs.parameters['nettoy_manifest']}}" in command
    config = _names_project(project, "After")
    with pytest.raises(PipelineError, match="steps 'After' and 'after' become the Kubeflow") as err:
        compile_pipeline(config, out)
    assert "rename the step" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("image", "cached"),
    [
        ("localhost/penguins-train:latest", False),
        ("registry.example:5000/penguins-train", False),  # no tag: latest
        ("registry.example:5000/penguins-train:7", True),
        ("ghcr.io/acme/train@sha256:" + "ab" * 32, True),
    ],
)
def test_kfp_caching_is_on_only_for_a_pinned_image(project, tmp_path, image, cached):
    # KFP keys a task's cache by the image's name: with :latest rebuilt after a code change,
    # every task hit KFP's cache and handed on the old code's outputs without running
    config = load_config(project, environ={"SHIPML_ARTIFACTS_ROOT": "s3://b/p"})
    out = tmp_path / "p.yaml"
    compiled = compile_pipeline(config, out, image=image)
    assert compiled.kfp_caching is cached
    dag = yaml.safe_load(out.read_text())["root"]["dag"]["tasks"]
    assert {t: dag[t]["cachingOptions"].get("enableCache", False) for t in dag} == dict.fromkeys(
        dag, cached
    )


def test_a_pipeline_name_kfp_cannot_take_is_a_pipeline_error(project, tmp_path):
    # 'é' becomes '' for kfp, whose ValueError was a traceback
    source = NAMES.replace("{second}", "other").replace("@pipeline\n", '@pipeline(name="é")\n')
    (project / "pipeline.py").write_text(source, encoding="utf-8")
    toml = project / "shipml.toml"
    text = toml.read_text().replace('name = "training"', 'name = "é"')
    toml.write_text(text.replace("[pipeline.params]\ntest_size = 0.25\nn_estimators = 200\n", ""))
    config = load_config(project, environ={"SHIPML_ARTIFACTS_ROOT": "s3://b/p"})
    with pytest.raises(PipelineError, match="kfp cannot compile the pipeline: Invalid pipeline"):
        compile_pipeline(config, tmp_path / "p.yaml")
