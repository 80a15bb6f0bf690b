"""The one table of estimators behind `shipml init --model`: every model, in the penguins
example and in a project made `--data`, writes a pipeline whose hyperparameters are
pipeline parameters and a `[tune.space]` that `shipml tune` accepts and searches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.errors import ProjectError
from shipml.pipeline import run_pipeline
from shipml.pipeline.loading import load_pipeline
from shipml.pipeline.space import check_space
from shipml.templates import create_project
from shipml.templates.estimators import ESTIMATORS
from shipml.templates.table import create_table_project
from shipml.tracking import Registry, tracker_for
from tests.conftest import shipml_here


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from palmerpenguins import load_penguins

    path = tmp_path_factory.mktemp("table") / "penguins.csv"
    load_penguins().to_csv(path, index=False)
    return path


@pytest.mark.parametrize("kind", ["penguins", "table"])
@pytest.mark.parametrize("model", list(ESTIMATORS))
def test_every_model_writes_a_space_over_its_pipeline_parameters(
    tmp_path, penguins_csv, model, kind
):
    if kind == "penguins":
        folder = create_project(tmp_path / "p", "p", git=False, model=model)
    else:
        made = create_table_project(
            tmp_path / "p", "p", penguins_csv, "body_mass_g", model=model, git=False
        )
        folder = made.folder
    config = load_config(folder)
    chosen = ESTIMATORS[model]
    assert set(config.tune.space) == set(chosen.space)
    assert f'MODEL = "{model}"' in (folder / "features.py").read_text()
    pipe = load_pipeline(config)
    defaults = pipe.build(config.pipeline.params).params
    assert {k: defaults[k] for k in chosen.hyperparameters} == {
        **chosen.hyperparameters,
        **{k: v for k, v in config.pipeline.params.items() if k in chosen.hyperparameters},
    }
    check_space(config, defaults, pipe)  # names parameters, defaults in range, types fit


def test_an_unknown_model_is_refused_before_anything_is_written(tmp_path, penguins_csv):
    with pytest.raises(ProjectError, match="unknown model 'torch'") as err:
        create_project(tmp_path / "p", "p", git=False, model="torch")
    assert "lightgbm" in (err.value.hint or "")
    with pytest.raises(ProjectError, match="unknown model"):
        create_table_project(tmp_path / "t", "t", penguins_csv, "body_mass_g", model="x" * 500)
    assert not (tmp_path / "p").exists() and not (tmp_path / "t").exists()


def test_tune_searches_a_boosted_models_space(tmp_path):
    """`shipml tune` on `shipml init --model lightgbm`: its trials draw LightGBM's
    hyperparameters from the space init wrote; the best is registered as challenger."""
    made = shipml_here("init", "lgbm", "--model", "lightgbm", "--no-git", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "lgbm"
    tuned = shipml_here("tune", "--trials", "3", "--budget", "5m", "--no-test", cwd=project)
    assert tuned.returncode == 0, tuned.stdout[-2000:] + tuned.stderr[-2000:]
    challenger = Registry(tracker_for(load_config(project))).resolve("lgbm@challenger")
    record = json.loads(challenger.tags["shipml.tune.record"])
    assert sorted(record["searched"]) == sorted(ESTIMATORS["lightgbm"].space)
    assert record["untuned"] == [] and record["trials_complete"] >= 2


@pytest.mark.parametrize("kind", ["penguins", "table"])
@pytest.mark.parametrize("model", list(ESTIMATORS))
def test_the_trained_model_is_reused_from_the_cache(tmp_path, penguins_csv, model, kind):
    """The types each fitted model holds are in its project's [model] trusted_types: the
    step cache reuses the trained model instead of training it again on every run."""
    chosen = ESTIMATORS[model]
    if chosen.framework is not None:
        pytest.importorskip(chosen.framework)
    if kind == "penguins":
        folder = create_project(tmp_path / "p", "p", git=False, model=model)
    else:
        made = create_table_project(
            tmp_path / "p", "p", penguins_csv, "body_mass_g", model=model, git=False
        )
        folder = made.folder
    config = load_config(folder)
    task = "classification" if kind == "penguins" else "regression"
    assert config.model.trusted_types == chosen.trusted_types(task)
    params = {"n_estimators": 5}
    run_pipeline(config, params=params, register=False)
    again = run_pipeline(config, params=params, register=False)
    assert "train" in again.cached and again.executed == []
