"""`shipml demo`, the main job, end to end through the real command and a real MLflow store."""

from pathlib import Path

from mlflow import MlflowClient

from shipml.config import load_config
from shipml.data import DatasetStore, table_digest
from shipml.model import ModelPackage
from shipml.tracking import Registry, tracker_for
from tests.conftest import shipml


def test_demo_builds_the_whole_local_journey(tmp_path: Path):
    result = shipml("demo", "--dir", "journey", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "penguins/1 @ challenger, champion" in result.stdout
    assert "gates hold" in result.stdout

    folder = tmp_path / "journey"
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
    exported = shipml("audit", "export", "-o", "audit.parquet", cwd=folder)
    assert exported.returncode == 0, exported.stderr
    import pandas as pd

    exported_rows = pd.read_parquet(folder / "audit.parquet")
    assert exported_rows["kind"].tolist() == ["event", "event", "prediction"]
    assert exported_rows["event"].tolist()[:2] == ["alias", "promotion"]
    assert exported_rows["request_id"].tolist()[2] == request_id
    # the version was tested before it was promoted, and the results are on it
    assert "passed" in champion.tags["shipml.tests.status"]
    assert (folder / "results" / "junit.xml").is_file()


def test_demo_picks_a_fresh_folder_each_time(tmp_path: Path):
    from shipml.demo import fresh_folder

    assert fresh_folder(tmp_path) == tmp_path / "shipml-demo"
    (tmp_path / "shipml-demo").mkdir()
    assert fresh_folder(tmp_path) == tmp_path / "shipml-demo-2"
