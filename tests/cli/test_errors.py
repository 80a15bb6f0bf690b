"""Each user mistake gets one clear message and a non-zero exit code, never a traceback.

These run the real `shipml` command in a subprocess."""

import re
import socket
from pathlib import Path

import pytest

from tests.conftest import shipml


def assert_clean_failure(result, *, code: int, says: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "hint:" in result.stderr


def test_missing_data_file(project: Path):
    (project / "data" / "penguins.csv").unlink()
    result = shipml("run", cwd=project)
    assert_clean_failure(result, code=5, says="data file not found: data/penguins.csv")


def test_malformed_csv(project: Path):
    csv = project / "data" / "penguins.csv"
    csv.write_text(csv.read_text() + "Adelie,Dream,1,2,3,4,male,2009,extra,fields\n")
    result = shipml("run", cwd=project)
    assert_clean_failure(result, code=5, says="malformed CSV")
    assert "line 346" in result.stderr


def test_unknown_config_key(project: Path):
    toml = project / "shipml.toml"
    toml.write_text(toml.read_text().replace("[tracking]\n", "[tracking]\nurl = 'x'\n"))
    result = shipml("run", cwd=project)
    assert_clean_failure(result, code=3, says="unknown key 'tracking.url'")
    assert "did you mean 'uri'?" in result.stderr


def test_a_step_that_raises(project: Path):
    pipeline_py = project / "pipeline.py"
    pipeline_py.write_text(
        pipeline_py.read_text().replace(
            '    """Fail early on data the model cannot learn from."""\n',
            '    """Fail early on data the model cannot learn from."""\n'
            '    raise ValueError("bad batch")\n',
        )
    )
    result = shipml("run", "-p", "n_estimators=5", cwd=project)
    assert_clean_failure(result, code=6, says="step 'validate' failed: ValueError: bad batch")
    assert "validate" in result.stderr and "failed" in result.stderr
    assert "skipped" in result.stderr  # downstream steps
    assert "ValueError at pipeline.py:" in result.stderr  # where, briefly


def test_debug_shows_the_traceback(project: Path):
    (project / "data" / "penguins.csv").unlink()
    result = shipml("--debug", "run", cwd=project)
    assert result.returncode == 5 and "Traceback" in result.stderr


def test_debug_tracebacks_never_show_a_password(project: Path):
    """MLflow's own exception, chained under shipml's, quotes the URL it called with its
    password; the traceback --debug prints must not."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    toml = project / "shipml.toml"
    uri = f"http://alice:s3cret-pw@127.0.0.1:{port}/"
    toml.write_text(re.sub(r'(?m)^uri = ".*"$', f'uri = "{uri}"', toml.read_text(), count=1))
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    result = shipml("--debug", "models", "ls", cwd=project, env=env)
    assert result.returncode == 7 and "Traceback" in result.stderr, result.stderr
    assert "MlflowException" in result.stderr  # the chained cause is shown, scrubbed
    assert "alice:***@127.0.0.1" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_an_error_quoting_the_user_s_bytes_never_sends_control_characters(project: Path):
    """A file name or a file's line in an error could drive the terminal (ESC ] 0 sets its
    title, ESC [ 2 J clears it): control characters are shown as escapes."""
    name = "a\x1b]0;PWNED\x07\x1b[2Jb.csv"
    result = shipml("data", "add", "x", name, cwd=project)
    assert result.returncode == 5, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "a\\x1b]0;PWNED\\x07\\x1b[2Jb.csv" in result.stderr


def test_unknown_model_alias(project: Path):
    assert (
        shipml("run", "-p", "n_estimators=5", "--alias", "challenger", cwd=project).returncode == 0
    )
    result = shipml("models", "show", "penguins@winner", cwd=project)
    assert_clean_failure(result, code=7, says="model 'penguins' has no alias 'winner'")
    assert "challenger -> v1" in result.stderr


def test_a_protected_alias_moves_only_through_the_gates(project: Path):
    ran = shipml("run", "-p", "n_estimators=5", "--alias", "champion", cwd=project)
    # the run is recorded and registered, but an untested version cannot be champion
    assert_clean_failure(ran, code=12, says="penguins/1 was not promoted to champion")
    assert "registered penguins/1" in ran.stdout and "tested" in ran.stdout
    moved = shipml("models", "alias", "penguins", "1", "champion", cwd=project)
    assert_clean_failure(moved, code=12, says="gate(s) do not hold")
    forced = shipml(
        "models",
        "alias",
        "penguins",
        "1",
        "champion",
        "--force",
        "--reason",
        "first deployment, tests run by hand",
        cwd=project,
    )
    assert forced.returncode == 0, forced.stderr
    assert "forced" in forced.stdout


def test_unknown_model_name_and_bad_ref(project: Path):
    result = shipml("models", "show", "nosuch@champion", cwd=project)
    assert_clean_failure(result, code=7, says="no registered model named 'nosuch'")
    result = shipml("models", "show", "a@b@c", cwd=project)
    assert_clean_failure(result, code=7, says="cannot read the model reference")


def test_init_into_a_non_empty_folder(tmp_path: Path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = shipml("init", "taken", cwd=tmp_path)
    assert_clean_failure(result, code=4, says="is not empty (1 entries: notes.txt)")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"  # nothing lost


def test_outside_a_project(tmp_path: Path):
    result = shipml("run", cwd=tmp_path)
    assert_clean_failure(result, code=3, says="no shipml.toml")


@pytest.mark.parametrize("args", [["data", "show", "nosuch"], ["data", "add", "x", "missing.csv"]])
def test_data_mistakes(project: Path, args: list[str]):
    result = shipml(*args, cwd=project)
    assert_clean_failure(result, code=5, says="nosuch" if "show" in args else "not found")


@pytest.mark.parametrize(
    "args", [["data", "show"], ["run", "--no-such-option"], ["no-such-command"]]
)
def test_usage_mistakes_print_usage_not_a_traceback(tmp_path: Path, args: list[str]):
    result = shipml(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Usage:" in result.stderr and "Traceback" not in result.stderr


def test_brackets_in_messages_survive(project: Path):
    toml = project / "shipml.toml"
    toml.write_text(toml.read_text().replace('name = "training"', 'name = "nosuch"'))
    result = shipml("run", cwd=project)
    assert result.returncode == 6
    assert "check [pipeline] name in shipml.toml" in result.stderr


def test_a_deeply_nested_or_huge_param_is_a_short_clear_error():
    # json.loads raised RecursionError: a traceback for a --param value
    from shipml.cli.project import _parse_params
    from shipml.errors import PipelineError

    deep = "[" * 50_000 + "]" * 50_000
    with pytest.raises(PipelineError, match=r"--param k: the value is nested too deeply"):
        _parse_params([f"k={deep}"])
