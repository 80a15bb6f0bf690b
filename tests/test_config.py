import subprocess
import sys
from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.errors import ConfigError
from tests.conftest import shipml


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "shipml.toml").write_text(text)
    return tmp_path


def test_embedded_defaults_resolve_against_the_project_root(tmp_path):
    cfg = load_config(write(tmp_path, '[project]\nname = "x"\n'), environ={})
    assert cfg.tracking_uri == f"sqlite:///{tmp_path.resolve()}/.shipml/mlflow.db"
    assert cfg.registry_uri == cfg.tracking_uri
    assert cfg.artifact_root == str(tmp_path.resolve() / ".shipml/artifacts")
    assert cfg.experiment_name == "x" and cfg.model_name == "x"


def test_environment_overrides_every_section(tmp_path):
    root = write(tmp_path, '[tracking]\nuri = "sqlite:///a.db"\n')
    cfg = load_config(
        root,
        environ={
            "SHIPML_TRACKING_URI": "postgresql://db/mlflow",
            "SHIPML_MODEL_PARITY_TOLERANCE": "0.001",
            "SHIPML_MODEL_TRUSTED_TYPES": '["sklearn.tree.DecisionTreeClassifier"]',
            "SHIPML_ARTIFACTS_ROOT": "s3://bucket/shipml",
        },
    )
    assert cfg.tracking_uri == "postgresql://db/mlflow"
    assert cfg.model.parity_tolerance == 0.001
    assert cfg.model.trusted_types == ["sklearn.tree.DecisionTreeClassifier"]
    assert cfg.artifact_root == "s3://bucket/shipml"


def test_unknown_key_names_the_key_and_the_closest_valid_one(tmp_path):
    root = write(tmp_path, '[tracking]\nurl = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError) as err:
        load_config(root, environ={})
    assert "tracking.url" in err.value.message
    assert "'uri'" in (err.value.hint or "")


def test_unknown_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[trackng]\nuri = 'x'\n"), environ={})
    assert "trackng" in err.value.message and "tracking" in (err.value.hint or "")


def test_unknown_key_in_a_dataset_section(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[datasets.p]\nsorce = 'a.csv'\n"), environ={})
    assert "datasets.p.sorce" in err.value.message


def test_unknown_environment_variable_suggests_the_right_one(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, ""), environ={"SHIPML_TRACKING_URL": "x"})
    assert "SHIPML_TRACKING_URL" in err.value.message
    assert "SHIPML_TRACKING_URI" in (err.value.hint or "")


def test_wrong_type_shows_the_value(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[model]\nparity_tolerance = 'tiny'\n"), environ={})
    assert "model.parity_tolerance" in err.value.message and "'tiny'" in err.value.message


def test_invalid_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[project\n"), environ={})


def test_no_project_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no shipml\.toml"):
        load_config()


def test_environment_value_errors_name_the_variable_and_text_stays_text(tmp_path):
    root = write(tmp_path, "")
    cfg = load_config(root, environ={"SHIPML_TRACKING_EXPERIMENT": "2024"})
    assert cfg.experiment_name == "2024"
    with pytest.raises(ConfigError) as err:
        load_config(root, environ={"SHIPML_MODEL_PARITY_TOLERANCE": "tiny"})
    assert "environment variable SHIPML_MODEL_PARITY_TOLERANCE" in err.value.message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[rollout]\nmode = 'blue-green'\n", "rollout.mode"),
        ("[deploy.prod]\nmode = 'Canary'\n", "deploy.prod.mode"),
        ("[containers]\nengine = 'lxc'\n", "containers.engine"),
        ("[ci]\nprovider = 'jenkins'\n", "ci.provider"),
        ("[ci]\nlocal_target = 'nomad'\n", "ci.local_target"),
    ],
)
def test_a_setting_with_fixed_choices_rejects_any_other_value(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert key in err.value.message and "Input should be" in err.value.message


def test_fixed_choices_from_the_environment_are_read_as_text(tmp_path):
    cfg = load_config(write(tmp_path, ""), environ={"SHIPML_ROLLOUT_MODE": "canary"})
    assert cfg.rollout.mode == "canary"
    with pytest.raises(ConfigError, match="environment variable SHIPML_CI_PROVIDER"):
        load_config(tmp_path, environ={"SHIPML_CI_PROVIDER": "1"})


def test_importing_the_configuration_changes_nothing_in_the_process():
    code = (
        "import logging, os, sys; env = dict(os.environ); "
        "levels = {n: logging.getLogger(n).level for n in ('', 'mlflow', 'alembic')}; "
        "import shipml.config; "
        "assert dict(os.environ) == env, 'environment changed'; "
        "assert levels == {n: logging.getLogger(n).level for n in levels}, 'log levels'; "
        "heavy = {'pandas', 'mlflow', 'sklearn'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("section", ["tests", "monitor"])
def test_the_results_folders_of_the_settings_stay_inside_the_project(tmp_path, section):
    """`shipml test` and `shipml monitor` write there: a setting cannot send them out of
    the project (`-o DIR` on the command line can, as the user chose)."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "out-link").symlink_to(tmp_path)
    attribute = f"{section}_output"
    for value in ("../elsewhere", str(tmp_path / "abs"), ".", "sub/../..", "~"):
        cfg = load_config(write(root, f'[{section}]\noutput = "{value}"\n'), environ={})
        with pytest.raises(ConfigError, match=rf"\[{section}\] output = .* resolves to"):
            getattr(cfg, attribute)
    cfg = load_config(write(root, f'[{section}]\noutput = "results/{section}"\n'), environ={})
    assert getattr(cfg, attribute) == root.absolute() / "results" / section
    # a link made in the project is its owner's choice (the test image's results ->
    # /results volume; a bigger disk): the setting names a folder in the project
    cfg = load_config(write(root, f'[{section}]\noutput = "out-link/x"\n'), environ={})
    assert getattr(cfg, attribute) == root.absolute() / "out-link" / "x"


def test_shipml_test_refuses_a_results_folder_out_of_the_project(project: Path):
    toml = project / "shipml.toml"
    toml.write_text(toml.read_text().replace('output = "results"', 'output = "../results"', 1))
    result = shipml("test", "penguins@champion", cwd=project)
    assert result.returncode == 3, result.stderr
    assert "[tests] output = '../results' resolves to" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project.parent / "results").exists()


def test_the_dashboard_token_variable_is_not_taken_for_a_setting(tmp_path):
    """SHIPML_DASHBOARD_TOKEN is read by `shipml dashboard`; the configuration, which
    refuses unknown SHIPML_ variables, must let it through."""
    env = {"SHIPML_DASHBOARD_TOKEN": "a-token-of-16-chars"}
    assert load_config(write(tmp_path, '[project]\nname = "x"\n'), environ=env).project.name == "x"
