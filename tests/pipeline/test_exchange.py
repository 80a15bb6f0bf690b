"""`shipml step run`: steps run one at a time, chained through the artifact store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.errors import PipelineError, UnsafeModelError
from shipml.pipeline import load_pipeline
from shipml.pipeline.exchange import run_step
from shipml.pipeline.stepwise import register_run
from shipml.tracking import tracker_for
from tests.conftest import forget_s3_clients, shipml, shipml_here

FAST = {"n_estimators": 5}


def _chain(config) -> dict[str, str]:
    done: dict[str, str] = {}
    for name, ups in [
        ("ingest", []),
        ("validate", ["ingest"]),
        ("split", ["validate"]),
        ("train", ["split"]),
        ("evaluate", ["train", "split"]),
        ("package", ["train", "split"]),
    ]:
        result = run_step(config, name, [done[u] for u in ups], params=FAST)
        assert result.status == "done", name
        done[name] = result.manifest
    return done


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3, a real HTTP server in a thread, with a bucket; its environment."""
    import boto3
    from moto.server import ThreadedMotoServer

    forget_s3_clients()  # an earlier test's clients must not be reused (other endpoint)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket="shipml-test")
        yield env
    forget_s3_clients()  # nor this one's, once its server is stopped
    server.stop()


def test_the_template_pipeline_runs_step_by_step_through_an_object_store(project, s3):
    """Through a bucket of an S3-compatible server (moto), as on a cluster; then recorded
    as one MLflow run with its model registered, as Kubeflow's last task does."""
    import fsspec

    scheme = "s3"
    fs = fsspec.filesystem(scheme)
    fs.invalidate_cache()
    prefix = "shipml-test/steps-test"
    config = load_config(project, environ={"SHIPML_ARTIFACTS_ROOT": f"{scheme}://{prefix}"})
    done = _chain(config)
    assert all(uri.startswith(f"{scheme}://{prefix}/steps/manifests/") for uri in done.values())
    package = json.loads(fs.cat_file(done["package"].split("://", 1)[1]))
    assert package["outputs"][0]["kind"] == "package"
    folder = f"{prefix}/steps/objects/{package['outputs'][0]['file']}"
    assert fs.exists(f"{folder}/model.onnx") and fs.exists(f"{folder}.complete")
    evaluate = json.loads(fs.cat_file(done["evaluate"].split("://", 1)[1]))
    assert evaluate["metrics"]["accuracy"] > 0.9
    # Same code, inputs and arguments: the manifest is there, the step is not run again.
    again = run_step(config, "split", [done["validate"]], params=FAST)
    assert again.status == "cached" and again.manifest == done["split"]
    # The last step's manifest leads to all the others: one MLflow run, the model registered.
    recorded = register_run(config, [done["evaluate"], done["package"]], params=FAST)
    assert recorded.model_version is not None and recorded.model_version.version == "1"
    graph = load_pipeline(config).build({**config.pipeline.params, **FAST})
    assert sorted(recorded.edges) == sorted(graph.edges())
    run = tracker_for(config).get_run(recorded.run_id)
    assert run.data.tags["shipml.orchestrator"] == "kubeflow" and run.info.status == "FINISHED"
    assert run.data.metrics["accuracy"] == evaluate["metrics"]["accuracy"]
    assert run.inputs.dataset_inputs[0].dataset.name == "penguins"
    with pytest.raises(PipelineError, match="no outputs of step"):
        register_run(config, [done["split"]], params=FAST)


def test_wrong_or_missing_inputs_are_named(project):
    config = load_config(project)
    ingest = run_step(config, "ingest").manifest
    with pytest.raises(PipelineError, match="needs the outputs of ingest"):
        run_step(config, "validate")
    with pytest.raises(PipelineError, match="holds the outputs of step 'ingest', not of 'split'"):
        run_step(config, "train", [f"split={ingest}"])
    with pytest.raises(PipelineError, match="has no step 'trian'"):
        run_step(config, "trian")
    with pytest.raises(PipelineError, match="no step manifest"):
        run_step(config, "validate", [ingest.replace(".json", "0.json")])


def test_cli_step_run_chains_and_fails_like_run(project: Path):
    first = shipml("step", "run", "ingest", "--output-file", "out/ingest.txt", cwd=project)
    assert first.returncode == 0, first.stderr
    uri = first.stdout.strip()
    assert (project / "out" / "ingest.txt").read_text() == uri
    second = shipml("step", "run", "validate", "--input", uri, cwd=project)
    assert second.returncode == 0 and "step validate done" in second.stderr
    (project / "pipeline.py").write_text(
        (project / "pipeline.py")
        .read_text()
        .replace("    return df\n", "    raise RuntimeError('no good')\n", 1)
    )
    failed = shipml("step", "run", "validate", "--input", uri, cwd=project)
    assert failed.returncode == 6
    assert "step 'validate' failed: RuntimeError: no good" in failed.stderr
    assert "Traceback" not in failed.stderr


EVIL = """
from pathlib import Path

RAN = Path({ran!r})


class Evil:
    def __setstate__(self, state):  # what skops calls when it loads one
        RAN.write_text("constructed")
        self.__dict__.update(state)

    def predict(self, X):
        return ["Adelie"] * len(X)
"""


def test_an_upstream_output_of_an_untrusted_type_is_refused_by_name(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A manifest in the bucket lists the types of its skops output: someone who can write
    the bucket lists one whose construction runs code. The downstream step refuses it with
    an error naming the type (it cannot run the upstream step again here)."""
    import hashlib
    import importlib
    from dataclasses import asdict

    import skops.io as sio

    from shipml.pipeline.cache import StoredOutput
    from shipml.pipeline.exchange import FORMAT, Exchange

    ran = tmp_path / "ran.txt"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "planted.py").write_text(EVIL.format(ran=str(ran)))
    monkeypatch.syspath_prepend(str(outside))
    planted = importlib.import_module("planted")
    config = load_config(project)
    ingest = run_step(config, "ingest").manifest
    validate = run_step(config, "validate", [ingest]).manifest
    split = run_step(config, "split", [validate]).manifest
    data = sio.dumps(planted.Evil())
    sha = hashlib.sha256(data).hexdigest()
    exchange = Exchange(config.artifact_root)
    exchange.fs.pipe_file(f"{exchange.base}/objects/skops-{sha}.skops", data)
    out = StoredOutput("output", "skops", sha, f"skops-{sha}.skops", ["planted.Evil"], sha)
    forged = {"format": FORMAT, "step": "train", "outputs": [asdict(out)], "metrics": {}}
    train = exchange.write_manifest("f" * 64, forged)
    with pytest.raises(UnsafeModelError, match=r"not trusted: planted\.Evil") as refused:
        run_step(config, "evaluate", [train, split])
    assert "[model] trusted_types" in (refused.value.hint or "")
    assert not ran.exists()  # never constructed
    failed = shipml_here("step", "run", "evaluate", "--input", train, "--input", split, cwd=project)
    assert failed.returncode == 8, failed.stderr
    assert "planted.Evil" in failed.stderr and "Traceback" not in failed.stderr
    assert not ran.exists()


TWICE = """
from shipml import pipeline, step

@step
def rows():
    return [1, 2, 3]

@step
def measure(r):
    return sum(r)

@step
def join(a, b):
    return a + b

@pipeline
def twice():
    r = rows()
    join(measure(r), measure(r))
"""


def test_a_step_called_twice_with_the_same_inputs_hands_on_a_manifest_of_its_own(tmp_path):
    # measure and measure_2 had one cache key, so one manifest, naming 'measure': join
    # then refused it ("step 'join' needs the outputs of measure_2"), on Kubeflow too
    root = tmp_path / "twice"
    root.mkdir()
    (root / "pipeline.py").write_text(TWICE, encoding="utf-8")
    store = f"sqlite:///{tmp_path}/mlflow.db"
    (root / "shipml.toml").write_text(f'[project]\nname = "twice"\n[tracking]\nuri = "{store}"\n')
    config = load_config(root)
    rows = run_step(config, "rows").manifest
    first, second = (run_step(config, n, [rows]) for n in ("measure", "measure_2"))
    assert first.key == second.key and first.manifest != second.manifest
    joined = run_step(config, "join", [first.manifest, second.manifest])
    assert joined.status == "done"
    again = run_step(config, "measure_2", [rows])
    assert again.status == "cached" and again.manifest == second.manifest
    recorded = register_run(config, [joined.manifest])
    assert sorted(recorded.steps) == ["join", "measure", "measure_2", "rows"]


def test_a_manifest_naming_a_file_outside_the_cache_is_refused(tmp_path):
    # a forged manifest in the store ('file': '../../../x') had `step run` write the
    # fetched object outside the local cache
    root = tmp_path / "twice"
    root.mkdir()
    (root / "pipeline.py").write_text(TWICE, encoding="utf-8")
    store = f"sqlite:///{tmp_path}/mlflow.db"
    (root / "shipml.toml").write_text(f'[project]\nname = "twice"\n[tracking]\nuri = "{store}"\n')
    config = load_config(root, environ={"SHIPML_ARTIFACTS_ROOT": str(tmp_path / "store")})
    rows = Path(run_step(config, "rows").manifest)
    data = json.loads(rows.read_text())
    # objects/../../../planted: beside the store (a folder here), then the project's folder
    (tmp_path / "planted").write_text("[1, 2, 3]")
    data["outputs"][0]["file"] = "../../../planted"
    rows.write_text(json.dumps(data))
    with pytest.raises(PipelineError, match="not a name shipml gives"):
        run_step(config, "measure", [str(rows)])
    assert not (root / "planted").exists()
    # nor is a manifest read from outside the store through '..'
    (tmp_path / "outside.json").write_text(json.dumps({**data, "format": 2}))
    outside = f"{tmp_path}/store/steps/../../outside.json"
    with pytest.raises(PipelineError, match="is not in this project's artifact store"):
        run_step(config, "measure", [outside])
