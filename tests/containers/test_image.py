"""Each image kind, built and run for real with podman."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from shipml.config import ProjectConfig
from shipml.containers import BuiltImage, Engine, build_image, store_mounts
from shipml.data import DatasetStore
from shipml.tracking import Registry, tracker_for
from tests.containers.images import BUILT, free_port, logs, podman, start, wait_http

PENGUIN = {  # the features of the template model (year is not one)
    "island": "Biscoe",
    "bill_length_mm": 48.6,
    "bill_depth_mm": 16.0,
    "flipper_length_mm": 230.0,
    "body_mass_g": 5800.0,
    "sex": "male",
}


def v2_request(row: dict[str, object]) -> bytes:
    inputs = []
    for key, value in row.items():
        datatype = "BYTES" if isinstance(value, str) else "FP64"
        inputs.append({"name": key, "shape": [1, 1], "datatype": datatype, "data": [value]})
    return orjson.dumps({"inputs": inputs})


def post(url: str, body: bytes) -> dict[str, object]:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return dict(orjson.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{url} answered {exc.code}: {exc.read().decode()}") from exc


# -- serve ------------------------------------------------------------------------------


def test_serve_image_answers_v2_read_only_as_non_root(
    serve_image: BuiltImage, engine: Engine, container: list[str]
) -> None:
    port = free_port()
    name = start(
        serve_image.id, container, options=("--read-only", "--publish", f"127.0.0.1:{port}:8080")
    )
    assert wait_http(f"http://127.0.0.1:{port}/v2/health/ready") == 200, logs(name)
    answer = post(f"http://127.0.0.1:{port}/v2/models/ctpenguins/infer", v2_request(PENGUIN))
    assert answer["model_name"] == "ctpenguins" and answer["model_version"] == "1"
    label = next(o for o in answer["outputs"] if o["name"] == "label")  # type: ignore[attr-defined]
    assert label["data"] == ["Gentoo"]
    uid = podman("exec", name, "id", "-u")
    assert uid.returncode == 0 and uid.stdout.strip() == "10001"
    # the root filesystem is read-only for real
    touch = podman("exec", name, "touch", "/srv/x")
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr
    assert podman("healthcheck", "run", name).returncode == 0


def test_serve_image_is_the_runtime_only_and_labelled_with_lineage(
    serve_image: BuiltImage, engine: Engine, ct_project: ProjectConfig
) -> None:
    info = engine.inspect(serve_image.id)
    assert info.user == "10001:10001"
    assert f"{serve_image.name}" in {t.removeprefix("docker.io/") for t in info.tags}
    assert serve_image.name == "localhost/ctpenguins-serve:1"
    registry = Registry(tracker_for(ct_project))
    version = registry.resolve("ctpenguins@champion")
    labels = info.labels
    assert labels["org.opencontainers.image.title"] == "ctpenguins-serve"
    assert labels["org.opencontainers.image.version"] == "1"
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])
    assert labels["io.shipml.model.name"] == "ctpenguins"
    assert labels["io.shipml.model.version"] == "1"
    assert labels["io.shipml.model.onnx-sha256"] == version.tags["shipml.onnx_sha256"]
    assert labels["io.shipml.run-id"] == version.run_id
    digest = DatasetStore(ct_project.artifact_root).get("penguins").digest
    assert labels["io.shipml.dataset.penguins.sha256"] == digest
    assert labels["io.shipml.git-commit"] == version.tags["shipml.git_commit"]
    # the image digest is recorded on the model version
    assert version.tags["shipml.image_digest"] == serve_image.id
    assert version.tags["shipml.image"] == serve_image.name
    # neither MLflow nor scikit-learn: the model server and onnxruntime only
    probe = podman(
        "run",
        "--rm",
        "--entrypoint",
        "python3",
        serve_image.id,
        "-c",
        "import importlib.util as u; print([m for m in ('mlflow', 'sklearn', "
        "'skl2onnx', 'onnxruntime', 'shipml') if u.find_spec(m)])",
    )
    assert probe.stdout.strip() == "['onnxruntime', 'shipml']", probe.stderr


def test_serve_image_runs_the_gateway_too(serve_image: BuiltImage, container: list[str]) -> None:
    port = free_port()
    name = start(
        serve_image.id,
        container,
        "gateway",
        "--champion",
        "v1=/model",
        options=("--read-only", "--publish", f"127.0.0.1:{port}:8000"),
    )
    url = f"http://127.0.0.1:{port}"
    assert wait_http(f"{url}/v2/health/ready") == 200, logs(name)
    answer = post(f"{url}/v2/models/model/infer", v2_request(PENGUIN))
    assert any(o["name"] == "label" for o in answer["outputs"]), answer  # type: ignore[attr-defined]


def test_lineage_explain_names_the_image(serve_image: BuiltImage, ct_project: ProjectConfig):
    from shipml.demo import serve_one
    from shipml.lineage import explain

    store = DatasetStore(ct_project.artifact_root, ct_project.root)
    request_id, _ = serve_one(ct_project, "ctpenguins@champion", store.get("penguins"), store)
    links = {link.kind: link.summary for link in explain(ct_project, request_id)}
    assert links["image"] == f"{serve_image.name} · {serve_image.id}"
    from tests.conftest import shipml

    shown = shipml("models", "show", "ctpenguins@champion", cwd=ct_project.root)
    assert f"image    {serve_image.name} {serve_image.id}" in shown.stdout, shown.stderr


def test_rebuild_with_nothing_changed_reuses_every_layer(
    serve_image: BuiltImage, ct_project: ProjectConfig, engine: Engine
) -> None:
    lines: list[str] = []
    again = build_image(ct_project, "serve", engine=engine, log=lines.append, record=False)
    output = "\n".join(lines)
    steps = [line for line in lines if re.match(r"STEP \d+/\d+: (RUN|COPY)", line)]
    assert steps and output.count("--> Using cache") >= len(steps), output
    assert again.id == serve_image.id
    assert (ct_project.root / "build" / "serve" / "Containerfile").is_file()


# -- data -------------------------------------------------------------------------------


def test_data_image_manifest_digest_is_the_store_digest(
    data_image: BuiltImage, ct_project: ProjectConfig, tmp_path: Path
) -> None:
    snap = DatasetStore(ct_project.artifact_root).get("penguins")
    manifest = podman("run", "--rm", "--entrypoint", "cat", data_image.id, "/data/manifest.json")
    assert manifest.returncode == 0, manifest.stderr
    assert json.loads(manifest.stdout)["digest"] == snap.digest
    assert data_image.name == "localhost/ctpenguins-data:penguins-1"
    # the default command verifies; as an init container it copies into a shared volume
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = podman(
        "run",
        "--rm",
        "--read-only",
        "-v",
        f"{shared}:/shared",
        data_image.id,
        "data",
        "verify",
        "/data",
        "--copy-to",
        "/shared",
    )
    assert done.returncode == 0, done.stderr
    assert snap.digest in " ".join(done.stdout.split())
    assert json.loads((shared / "manifest.json").read_text())["digest"] == snap.digest
    assert (shared / "data.parquet").is_file()
    assert podman("run", "--rm", data_image.id).returncode == 0


def test_data_image_refuses_altered_data(data_image: BuiltImage) -> None:
    alter = (
        "import pandas as pd; df = pd.read_parquet('/data/data.parquet'); "
        "df.loc[0, 'body_mass_g'] = 1.0; df.to_parquet('/data/data.parquet', index=False)"
    )

    def as_root(script: str) -> subprocess.CompletedProcess[str]:
        return podman(
            "run", "--rm", "--user", "0", "--entrypoint", "sh", data_image.id, "-c", script
        )

    done = as_root(f'python3 -c "{alter}" && shipml data verify /data')
    assert done.returncode == 5, done.stdout + done.stderr
    message = " ".join(done.stderr.split())
    assert "data error: /data/data.parquet does not match its manifest" in message
    assert "Traceback" not in done.stderr
    truncated = as_root(
        "head -c 100 /data/data.parquet > /tmp/d && cp /tmp/d /data/data.parquet"
        " && shipml data verify /data"
    )
    assert truncated.returncode == 5 and "cannot be read as Parquet" in truncated.stderr


# -- train ------------------------------------------------------------------------------


def test_train_image_runs_the_pipeline_against_the_mounted_store(
    train_image: BuiltImage, ct_project: ProjectConfig, engine: Engine
) -> None:
    info = engine.inspect(train_image.id)
    assert info.user == "10001:10001"
    assert info.labels["io.shipml.kind"] == "train"
    volumes, env = store_mounts(ct_project)
    args = ["run", "--rm"] + [a for v in volumes for a in ("-v", v)]
    args += [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    args += [
        "--user",
        "0:0",
        "-e",
        "HOME=/tmp",
        train_image.id,
        "run",
        "--no-register",
        "-p",
        "n_estimators=10",
    ]
    done = podman(*args, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = re.search(r"run ([0-9a-f]{32})", done.stdout)
    assert run_id, done.stdout
    run = tracker_for(ct_project).get_run(run_id.group(1))
    assert run.info.status == "FINISHED"
    assert run.data.params["n_estimators"] == "10"
    # the commit the image was built from, although the image has no git
    assert run.data.tags["mlflow.source.git.commit"] == info.labels["io.shipml.git-commit"]


def test_run_in_container_through_the_cli(train_image: BuiltImage, ct_project: ProjectConfig):
    from tests.conftest import shipml

    done = shipml(
        "run", "--in-container", "--no-register", "-p", "n_estimators=10", cwd=ct_project.root
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finished in" in done.stdout
    assert train_image.name.rsplit(":", 1)[0] in done.stderr  # built (from cache), then run


# -- test -------------------------------------------------------------------------------


def test_test_image_entrypoint_is_shipml_test_writing_to_results(
    test_image: BuiltImage, engine: Engine
) -> None:
    info = engine.inspect(test_image.id)
    assert info.user == "10001:10001"
    raw = podman("image", "inspect", test_image.id)
    config = json.loads(raw.stdout)[0]["Config"]
    assert config["Entrypoint"] == ["shipml", "test"]
    check = podman(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        test_image.id,
        "-c",
        "readlink /project/results && touch /results/x && ls /project/tests",
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split()[0] == "/results"
    assert "test_pipeline.py" in check.stdout


def test_test_image_writes_results_against_the_served_container(
    test_image: BuiltImage,
    serve_image: BuiltImage,
    ct_project: ProjectConfig,
    container: list[str],
    tmp_path: Path,
) -> None:
    port = free_port()
    start(serve_image.id, container, options=("--publish", f"127.0.0.1:{port}:8080"))
    wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
    volumes, env = store_mounts(ct_project)  # the model to test, and --export, need the store
    store = [a for v in volumes for a in ("-v", v)]
    store += [a for k, v in env.items() for a in ("-e", f"{k}={v}")]

    def run_tests(results: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        results.mkdir()
        return podman(
            "run",
            "--rm",
            "--network",
            "host",
            "--user",
            "0:0",
            "-e",
            "HOME=/tmp",
            *store,
            *extra,
            "-v",
            f"{results}:/results",
            test_image.id,
            "ctpenguins@champion",
            "--against",
            f"http://127.0.0.1:{port}",
            "--suite",
            "api",
            timeout=600,
        )

    passed = run_tests(tmp_path / "passed")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    for name in ("junit.xml", "report.html", "results.json"):
        assert (tmp_path / "passed" / name).is_file(), name
    results = json.loads((tmp_path / "passed" / "results.json").read_text())
    assert results["suites"]["api"]["status"] == "passed"
    version = Registry(tracker_for(ct_project)).resolve("ctpenguins@champion")
    assert version.tags["shipml.tests.status"] == "passed"  # exported to the store
    # a latency budget no server can meet: the api suite fails, and so does the container
    failed = run_tests(tmp_path / "failed", "-e", 'SHIPML_TESTS_API={"max_p95_ms": 0.001}')
    assert failed.returncode == 1, failed.stdout + failed.stderr
    results = json.loads((tmp_path / "failed" / "results.json").read_text())
    assert results["suites"]["api"]["status"] == "failed"
    assert (tmp_path / "failed" / "junit.xml").is_file()


# -- notebook ---------------------------------------------------------------------------


def test_notebook_image_serves_jupyterlab(notebook_image: BuiltImage, container: list[str]) -> None:
    port = free_port()
    name = start(notebook_image.id, container, options=("--publish", f"127.0.0.1:{port}:8888"))
    assert wait_http(f"http://127.0.0.1:{port}/api", timeout=120) == 200, logs(name)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=10) as resp:
        assert "version" in json.loads(resp.read())


def test_template_notebook_runs_headless_in_the_notebook_image(
    notebook_image: BuiltImage,
) -> None:
    done = podman(
        "run",
        "--rm",
        "--entrypoint",
        "jupyter",
        notebook_image.id,
        "execute",
        "notebooks/explore.ipynb",
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_engine_reports_a_failed_build_clearly(
    ct_project: ProjectConfig, engine: Engine, tmp_path: Path
) -> None:
    from shipml.errors import ContainerError

    (tmp_path / "Containerfile").write_text("FROM localhost/shipml-base:bookworm\nRUN exit 3\n")
    with pytest.raises(ContainerError) as info:
        engine.build(tmp_path, tmp_path / "Containerfile", tags=["localhost/shipml-broken:x"])
    assert "podman build failed" in info.value.message and "exit 3" in info.value.message


def test_notebook_container_through_the_cli_and_stopped_with_it(
    notebook_image: BuiltImage, ct_project: ProjectConfig
) -> None:
    import os
    import signal
    import sys
    import time

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    env["JUPYTER_TOKEN"] = "t" * 48
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shipml",
            "notebook",
            "--container",
            "--no-browser",
            "--port",
            str(port),
        ],
        cwd=ct_project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/api", timeout=180) == 200
        # the project folder is mounted: the template's notebook is there
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/contents/notebooks?token={'t' * 48}", timeout=10
        ) as resp:
            names = [c["name"] for c in json.loads(resp.read())["content"]]
        assert "explore.ipynb" in names
        # anyone with the token runs code in it: as the caller, with no capability (root
        # had podman's default set: chown, setuid, any file whatever its mode...)
        ps = podman("ps", "--filter", f"ancestor={notebook_image.id}", "--format", "{{.Names}}")
        (name,) = ps.stdout.split()
        top = podman("top", name, "capeff").stdout.split()
        assert top[0] == "EFFECTIVE" and set(top[2:]) == {"none"}, top
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=90)[0].decode()
    assert "JupyterLab in localhost/ctpenguins-notebook" in out
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = podman("ps", "--filter", f"ancestor={notebook_image.id}", "--quiet")
        if not running.stdout.strip():
            break
        time.sleep(1)
    assert not running.stdout.strip(), "the notebook container was left running"


def test_serve_image_of_a_package_folder(
    serve_image: BuiltImage, ct_project: ProjectConfig, engine: Engine, container: list[str]
) -> None:
    from shipml.model import ModelPackage

    registry = Registry(tracker_for(ct_project))
    folder = registry.local_path(registry.resolve("ctpenguins@champion"))
    image = build_image(ct_project, "serve", str(folder), engine=engine)
    BUILT.append(image.id)
    digest = ModelPackage.load(folder).model_digest
    assert image.name == f"localhost/ctpenguins-serve:local-{digest[:12]}"
    assert image.model is None  # not a registry version: nothing recorded
    assert engine.inspect(image.id).labels["io.shipml.model.version"] == f"local-{digest[:12]}"
    port = free_port()
    start(image.id, container, options=("--read-only", "--publish", f"127.0.0.1:{port}:8080"))
    assert wait_http(f"http://127.0.0.1:{port}/v2/models/ctpenguins") == 200
