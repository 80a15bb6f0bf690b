"""The local runner on a real project from the template, with a real MLflow store."""

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from shipml.config import ProjectConfig
from shipml.errors import DataError, StepFailed
from shipml.model import ModelPackage
from shipml.pipeline import run_pipeline
from shipml.tracking import Registry, tracker_for

FAST = {"n_estimators": 10}


def client(config: ProjectConfig) -> MlflowClient:
    return MlflowClient(config.tracking_uri, config.registry_uri)


def test_a_run_is_tracked_registered_and_fully_cached_the_second_time(config: ProjectConfig):
    # challenger: run_pipeline moves no protected alias (champion goes through the gates)
    first = run_pipeline(config, params=FAST, alias="challenger")
    assert first.status == "FINISHED"
    assert first.executed == ["ingest", "validate", "split", "train", "evaluate", "package"]
    assert first.model_created and first.model_version is not None
    assert "challenger" in first.model_version.aliases

    run = client(config).get_run(first.run_id)
    assert run.data.params["n_estimators"] == "10" and run.data.params["test_size"] == "0.25"
    assert {"accuracy", "f1_macro", "roc_auc_ovr", "cv_accuracy"} <= set(run.data.metrics)
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    (inp,) = run.inputs.dataset_inputs
    snap = first.datasets["penguins"]
    assert inp.dataset.name == "penguins" and inp.dataset.digest == snap.digest[:32]
    assert f'"sha256": "{snap.digest}"' in inp.dataset.profile
    assert run.data.tags["shipml.dataset.penguins.sha256"] == snap.digest

    second = run_pipeline(config, params=FAST)
    assert second.executed == []
    assert second.cached == first.executed
    assert not second.model_created
    assert second.model_version.version == first.model_version.version
    rerun = client(config).get_run(second.run_id)
    assert rerun.data.metrics["accuracy"] == run.data.metrics["accuracy"]  # re-logged from cache

    no_cache = run_pipeline(config, params=FAST, use_cache=False)
    assert no_cache.cached == []
    # the same seed trains the same model: the registry keeps its version
    assert not no_cache.model_created
    assert no_cache.model_version.version == first.model_version.version
    assert "challenger" in no_cache.model_version.aliases


def test_the_registered_package_holds_onnx_signature_profile_and_lineage(config: ProjectConfig):
    result = run_pipeline(config, params=FAST, alias="challenger")
    registry = Registry(tracker_for(config))
    info = registry.resolve("penguins@challenger")
    pkg = ModelPackage.load(registry.local_path(info))
    assert {"model.onnx", "signature.json", "profile.json", "lineage.json"} <= set(
        pkg.manifest["files"]
    )
    lineage = pkg.lineage
    assert lineage["run_id"] == result.run_id
    assert lineage["datasets"]["penguins"]["sha256"] == result.datasets["penguins"].digest
    assert lineage["git"]["commit"] and lineage["packages"]["scikit-learn"]
    assert info.tags["shipml.onnx_sha256"] == pkg.onnx_sha256
    assert pkg.profile["rows"] > 0 and "bill_length_mm" in pkg.profile["columns"]


def test_editing_a_helper_reruns_train_and_downstream_only(config: ProjectConfig, project: Path):
    run_pipeline(config, params=FAST)
    features = project / "features.py"
    features.write_text(
        features.read_text().replace('fill_value="unknown"', 'fill_value="not given"')
    )
    assert 'fill_value="not given"' in features.read_text()  # the edit is real
    result = run_pipeline(config, params=FAST)
    assert result.cached == ["ingest", "validate", "split"]
    assert result.executed == ["train", "evaluate", "package"]


def test_changing_one_cell_changes_the_digest_and_reruns_dependents(
    config: ProjectConfig, project: Path
):
    first = run_pipeline(config, params=FAST)
    csv = project / "data" / "penguins.csv"
    df = pd.read_csv(csv)
    df.loc[200, "body_mass_g"] += 25
    df.to_csv(csv, index=False)
    second = run_pipeline(config, params=FAST)
    assert second.datasets["penguins"].digest != first.datasets["penguins"].digest
    assert second.datasets["penguins"].version == 2
    assert "ingest" in second.executed and "train" in second.executed


def test_a_failing_step_is_named_its_traceback_kept_and_downstream_skipped(
    config: ProjectConfig, project: Path
):
    pipeline_py = project / "pipeline.py"
    pipeline_py.write_text(
        pipeline_py.read_text().replace(
            '    """Quality on the held-out rows."""\n',
            '    """Quality on the held-out rows."""\n'
            '    raise RuntimeError("metric server down")\n',
        )
    )
    with pytest.raises(StepFailed) as err:
        run_pipeline(config, params=FAST)
    assert err.value.step == "evaluate"
    assert "RuntimeError: metric server down" in err.value.message
    tb_file = Path(err.value.hint.split("full traceback: ")[1].split(";")[0])
    assert tb_file.is_file() and "metric server down" in tb_file.read_text()
    runs = client(config).search_runs(
        [client(config).get_experiment_by_name("penguins").experiment_id]
    )
    assert runs[0].info.status == "FAILED"
    assert runs[0].data.tags["shipml.failed_step"] == "evaluate"
    registry = Registry(tracker_for(config))
    assert "penguins" not in registry.model_names()  # package was skipped, nothing registered


def test_missing_data_file_fails_before_any_run(config: ProjectConfig, project: Path):
    (project / "data" / "penguins.csv").unlink()
    with pytest.raises(DataError, match="data file not found"):
        run_pipeline(config, params=FAST)


def test_a_pipeline_can_pin_a_dataset_version(config: ProjectConfig, project: Path):
    from shipml.data import DatasetStore

    store = DatasetStore(config.artifact_root, config.root)
    first = store.add("penguins", "data/penguins.csv")
    csv = project / "data" / "penguins.csv"
    csv.write_text(csv.read_text().replace("Torgersen", "Torgersen ", 1))
    pipeline_py = project / "pipeline.py"
    pipeline_py.write_text(
        pipeline_py.read_text().replace('dataset("penguins")', 'dataset("penguins@1")')
    )
    result = run_pipeline(config, params=FAST)
    assert result.datasets["penguins"].digest == first.digest
    run = client(config).get_run(result.run_id)
    assert run.data.tags["shipml.dataset.penguins.sha256"] == first.digest
