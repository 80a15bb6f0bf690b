"""`shipml demo`, the main job, end to end through the real command and a real MLflow store;
then `shipml ci run` on the project it made, as a team's CI would run on it.

One demo serves both, in order (the second test changes the project): the module is a
journey in steps, on the podman worker because CI builds images there (tests/conftest.py).
"""

import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from shipml.config import load_config
from shipml.data import DatasetStore, table_digest
from shipml.model import ModelPackage
from shipml.tracking import Registry, tracker_for
from tests.conftest import PODMAN, shipml
from tests.serving.conftest import free_port

pytestmark = pytest.mark.xdist_group(PODMAN)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The folder `shipml demo` made, and what the command printed."""
    base = tmp_path_factory.mktemp("demo")
    result = shipml("demo", "--dir", "journey", cwd=base)
    assert result.returncode == 0, result.stderr
    return base / "journey", result


def test_demo_builds_the_whole_local_journey(demo, tmp_path: Path):
    folder, result = demo
    assert "penguins/1 @ challenger, champion" in result.stdout
    assert "gates hold" in result.stdout

    config = load_config(folder)
    client = MlflowClient(config.tracking_uri, config.registry_uri)
    experiment = client.get_experiment_by_name("penguins")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert {"test_size", "n_estimators", "seed"} <= set(run.data.params)
    assert run.data.metrics["accuracy"] > 0.9
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40

    store = DatasetStore(config.artifact_root)
    snap = store.get("penguins")
    full = table_digest(store.load(snap))
    assert snap.digest == full
    (inp,) = run.inputs.dataset_inputs
    assert f'"sha256": "{full}"' in inp.dataset.profile
    assert inp.dataset.digest == full[:32]
    assert f"sha256 {full}" in result.stdout  # the summary cuts no digest or path

    registry = Registry(tracker_for(config))
    champion = registry.resolve("penguins@champion")
    assert champion.run_id == run.info.run_id
    package = ModelPackage.load(registry.local_path(champion))
    assert f"  package     {package.path}\n" in result.stdout, result.stdout
    for name in ("model.onnx", "signature.json", "profile.json", "lineage.json"):
        assert (package.path / name).is_file()
    assert package.lineage["datasets"]["penguins"]["sha256"] == full

    # the demo's prediction is audited, and its whole lineage can be explained
    request_id = result.stdout.split("request ")[1].split()[0]
    explained = shipml("audit", "explain", request_id, cwd=folder)
    assert explained.returncode == 0, explained.stderr
    text = " ".join(explained.stdout.split())
    for link in (
        "prediction",
        "model version penguins/1",
        "champion",
        "training run",
        run.info.run_id,
        "dataset penguins@1",
        full,
        "code git commit",
        run.data.tags["mlflow.source.git.commit"],
        "image",
        "tests",
    ):
        assert link in text, link
    import json

    links = json.loads(shipml("audit", "explain", request_id, "--json", cwd=folder).stdout)
    details = {link["kind"]: link["details"] for link in links}
    assert "champion" in details["model version"]["aliases"]
    assert details["training run"]["run_id"] == run.info.run_id
    assert details["dataset"]["sha256"] == full and details["dataset"]["version"] == 1
    assert details["code"]["git_commit"] == run.data.tags["mlflow.source.git.commit"]
    assert "passed" in details["tests"]["status"]
    verified = shipml("audit", "verify", cwd=folder)
    # the challenger alias and the promotion (lifecycle events), and the prediction
    assert verified.returncode == 0 and "verified 3 records" in verified.stdout
    exported = shipml("audit", "export", "-o", str(tmp_path / "audit.parquet"), cwd=folder)
    assert exported.returncode == 0, exported.stderr
    import pandas as pd

    exported_rows = pd.read_parquet(tmp_path / "audit.parquet")
    assert exported_rows["kind"].tolist() == ["event", "event", "prediction"]
    assert exported_rows["event"].tolist()[:2] == ["alias", "promotion"]
    assert exported_rows["request_id"].tolist()[2] == request_id
    # the version was tested before it was promoted, and the results are on it
    assert "passed" in champion.tags["shipml.tests.status"]
    assert (folder / "results" / "junit.xml").is_file()


def test_ci_run_on_the_demo_project(demo):
    """`shipml ci init`, then every stage passes on the demo project, with shipml as the
    workflow installs it (images on the offline base, staging on podman); promotion to
    production waits for approval."""
    folder, _ = demo
    port = free_port()  # staging's gateway, on podman
    toml = folder / "shipml.toml"
    from shipml.containers import build_base, find_engine

    base = build_base(find_engine("podman")).tag  # offline: no registry on the CI machines
    toml.write_text(
        toml.read_text() + f"\n[deploy.staging]\nhost_port = {port}\n"
        f'\n[ci]\nstaging_gateway = "http://127.0.0.1:{port}"\n'
        f'\n[containers]\nbase_image = "{base}"\n'
    )
    init = shipml("ci", "init", cwd=folder)  # the install line is not edited
    assert init.returncode == 0, init.stderr
    done = shipml("ci", "run", cwd=folder)
    shipml("deploy", "down", "--env", "staging", "--target", "podman", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "promote" in done.stdout and "needs approval" in done.stdout
    # The stages ran with the shipml the workflow's own install line installed.
    assert "$ pip install ./ci/shipml-" in done.stderr


def test_demo_picks_a_fresh_folder_each_time(tmp_path: Path):
    from shipml.demo import fresh_folder

    assert fresh_folder(tmp_path) == tmp_path / "shipml-demo"
    (tmp_path / "shipml-demo").mkdir()
    assert fresh_folder(tmp_path) == tmp_path / "shipml-demo-2"
