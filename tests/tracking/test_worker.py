"""The tracking worker: a pipeline run tracked from a child process, over a real pipe, into
a real MLflow store, records what a run tracked in process records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from shipml.config import ProjectConfig
from shipml.errors import RegistryError, StepFailed, TrackingError
from shipml.pipeline import run_pipeline
from shipml.tracking import tracker_for
from shipml.tracking.remote import RemoteTracker, remote_tracker_for
from shipml.tracking.worker import TrackingWorker
from tests.conftest import SHIPML

FAST = {"n_estimators": 10}


def client(config: ProjectConfig) -> MlflowClient:
    return MlflowClient(config.tracking_uri, config.registry_uri)


def artifacts(c: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in c.list_artifacts(run_id, path):
        found |= artifacts(c, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture
def worker() -> Iterator[TrackingWorker]:
    with TrackingWorker.start() as started:
        yield started


@pytest.fixture
def remote(worker: TrackingWorker, config: ProjectConfig) -> RemoteTracker:
    return remote_tracker_for(worker, config)


def test_a_run_through_the_worker_records_what_a_run_in_process_records(
    config: ProjectConfig, remote: RemoteTracker
):
    by_worker = run_pipeline(config, params=FAST, alias="challenger", tracker=remote)
    in_process = run_pipeline(config, params=FAST, use_cache=False)
    assert (
        by_worker.executed
        == in_process.executed
        == [
            "ingest",
            "validate",
            "split",
            "train",
            "evaluate",
            "package",
        ]
    )
    assert by_worker.model_created and not in_process.model_created  # same seed, same model
    assert by_worker.model_version == in_process.model_version
    assert by_worker.model_version is not None
    assert "challenger" in by_worker.model_version.aliases

    c = client(config)
    a, b = c.get_run(by_worker.run_id), c.get_run(in_process.run_id)
    assert a.info.status == b.info.status == "FINISHED"
    assert a.info.end_time >= a.info.start_time
    assert a.data.params == b.data.params
    assert a.data.metrics == b.data.metrics and "accuracy" in a.data.metrics
    assert set(a.data.tags) == set(b.data.tags)
    for key in (
        "mlflow.source.git.commit",
        "shipml.dataset.penguins.sha256",
        "shipml.model.version",
        "shipml.steps.cached",
    ):
        assert a.data.tags[key] == b.data.tags[key]
    (da,), (db,) = a.inputs.dataset_inputs, b.inputs.dataset_inputs
    assert (da.dataset.digest, da.dataset.profile) == (db.dataset.digest, db.dataset.profile)
    assert artifacts(c, a.info.run_id) - {"model"} >= artifacts(c, b.info.run_id)
    assert "model/model.onnx" in artifacts(c, a.info.run_id)  # the package, logged once


def test_a_failing_step_through_the_worker_ends_the_run_failed_with_its_traceback(
    config: ProjectConfig, project: Path, remote: RemoteTracker
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
        run_pipeline(config, params=FAST, tracker=remote)
    tb_file = Path(err.value.hint.split("full traceback: ")[1].split(";")[0])
    assert "metric server down" in tb_file.read_text()
    c = client(config)
    (run,) = c.search_runs([c.get_experiment_by_name("penguins").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["shipml.failed_step"] == "evaluate"


def _log_a_metric_mlflow_refuses(project: Path) -> None:
    """The train step logs ``top@1`` too, a name MLflow refuses."""
    pipeline_py = project / "pipeline.py"
    text = pipeline_py.read_text()
    assert "log_metrics(" in text
    refused = 'log_metrics({"top@1": 1.0}); log_metrics('
    pipeline_py.write_text(text.replace("log_metrics(", refused, 1))


def test_a_step_whose_metrics_the_store_refuses_fails_the_run_there_and_is_not_cached(
    config: ProjectConfig,
    project: Path,
    remote: RemoteTracker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    _log_a_metric_mlflow_refuses(project)
    for _ in range(2):  # and again: the failed step was not cached, nothing was registered
        with pytest.raises(TrackingError, match=r"log_metrics.*top@1"):
            run_pipeline(config, params=FAST, tracker=remote)
    c = client(config)
    runs = c.search_runs([c.get_experiment_by_name("penguins").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]
    ran = {json.loads(e.read_text())["step"] for e in (config.cache_dir / "entries").iterdir()}
    assert ran == {"ingest", "validate", "split"}  # train, and what follows, are not cached
    assert c.search_registered_models() == []
    assert list((tmp_path / "tmp").iterdir()) == []  # the run's work folder is gone


def test_a_posted_call_that_fails_makes_end_run_end_the_run_failed(
    config: ProjectConfig, remote: RemoteTracker
):
    run_id = remote.start_run("probe", {})
    remote.set_tags(run_id, {"bad@key": "v"})  # posted; MLflow refuses the name
    with pytest.raises(TrackingError, match="set_tags"):
        remote.end_run(run_id, "FINISHED")
    assert client(config).get_run(run_id).info.status == "FAILED"


def test_errors_keep_their_class_message_and_hint_and_the_pipe_stays_in_step(
    config: ProjectConfig, remote: RemoteTracker
):
    run_id = remote.start_run("probe", {})
    with pytest.raises(RegistryError) as err:
        remote.registry().set_alias("penguins", "1", "latest")
    assert "invalid alias 'latest'" in err.value.message and "reserved" in (err.value.hint or "")
    assert isinstance(err.value.__cause__, Exception)  # the worker's traceback, for --debug
    assert "registry.py" in str(err.value.__cause__)
    assert remote.artifact_uri(run_id).endswith(f"{run_id}/artifacts")


def test_a_posted_call_that_fails_is_raised_by_the_next_call_that_waits_before_it_is_sent(
    config: ProjectConfig, remote: RemoteTracker
):
    run_id = remote.start_run("probe", {})
    remote.set_tags("0" * 32, {"alpha": "1"})  # no such run; posted, not awaited
    with pytest.raises(TrackingError, match="set_tags"):
        remote.log_params(run_id, {"alpha": 2})
    remote.end_run(run_id, "FINISHED")  # later calls are unaffected
    run = client(config).get_run(run_id)
    assert run.data.params == {} and run.info.status == "FINISHED"  # log_params not sent


def test_a_posted_error_still_pending_at_close_is_raised_by_close(config: ProjectConfig):
    worker = TrackingWorker.start()
    remote = remote_tracker_for(worker, config)
    remote.start_run("probe", {})
    remote.set_tags("0" * 32, {"a": "b"})
    with pytest.raises(TrackingError, match="set_tags"):
        worker.close()
    assert worker.process.returncode == 0


def test_many_posted_calls_with_long_answers_never_block_the_pipe(
    config: ProjectConfig, remote: RemoteTracker
):
    """Hundreds of posted calls, each failing with a traceback, none awaited: without a
    reader the worker would block on its full answer pipe while the command blocks on its
    full request pipe."""
    run_id = remote.start_run("probe", {})
    outcome: list[BaseException | None] = []

    def flood() -> None:
        try:
            for i in range(400):
                remote.log_text("0" * 32, "x" * 1000, f"note-{i}.txt")  # no such run
            remote.artifact_uri(run_id)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the command and the worker blocked each other"
    (error,) = outcome
    assert isinstance(error, TrackingError) and "log_text" in error.message
    assert remote.artifact_uri(run_id).endswith(f"{run_id}/artifacts")  # still in step


def test_the_worker_serves_only_the_listed_calls(worker: TrackingWorker, remote: RemoteTracker):
    remote.start_run("probe", {})
    with pytest.raises(TrackingError, match=r"does not serve tracker\.__init__"):
        worker.call("tracker", "__init__", "sqlite:///elsewhere.db")
    with pytest.raises(TrackingError, match=r"does not serve registry\.delete_version_tag"):
        worker.call("registry", "delete_version_tag", "penguins", "1", "k")


def test_a_worker_that_dies_is_a_clear_error(config: ProjectConfig, remote: RemoteTracker):
    remote.start_run("probe", {})
    remote.worker.process.kill()
    remote.worker.process.wait()
    with pytest.raises(TrackingError, match=r"tracking worker \(pid \d+\) ended with exit code -9"):
        remote.artifact_uri("x")


def test_a_worker_killed_mid_run_is_a_clear_error_and_the_run_ends_failed(
    config: ProjectConfig, remote: RemoteTracker, monkeypatch: pytest.MonkeyPatch
):
    """kill -9 of the worker: nobody is left in it to end the run, so the command does."""
    started: list[str] = []
    log_params = remote.log_params

    def killed_first(run_id: str, params: dict[str, object]) -> None:
        started.append(run_id)
        remote.worker.process.kill()
        remote.worker.process.wait()
        log_params(run_id, params)

    monkeypatch.setattr(remote, "log_params", killed_first)
    with pytest.raises(TrackingError, match=r"ended with exit code -9 during tracker\.log_params"):
        run_pipeline(config, params=FAST, tracker=remote)
    assert client(config).get_run(started[0]).info.status == "FAILED"


def test_a_worker_killed_before_end_run_leaves_the_run_failed_not_finished(
    config: ProjectConfig, remote: RemoteTracker
):
    run_id = remote.start_run("probe", {})
    remote.set_tags(run_id, {"posted": "yes"})
    remote.worker.process.kill()
    remote.worker.process.wait()
    with pytest.raises(TrackingError, match="tracking worker"):
        remote.end_run(run_id, "FINISHED")
    assert client(config).get_run(run_id).info.status == "FAILED"


def test_a_worker_never_asked_anything_is_stopped_at_once_and_changed_nothing(
    config: ProjectConfig,
):
    worker = TrackingWorker.start()
    remote_tracker_for(worker, config)  # opening the store waits for the first call
    worker.close()
    assert worker.process.returncode == -signal.SIGKILL
    assert not (config.root / ".shipml" / "mlflow.db").exists()


def test_the_worker_is_in_its_own_process_group_so_ctrl_c_reaches_only_the_command(
    worker: TrackingWorker,
):
    assert os.getpgid(worker.process.pid) == worker.process.pid != os.getpgid(0)


def _ctrl_c_as_a_terminal_sends_it() -> None:
    """In the command's process before it starts: SIGINT's default action, so that the
    command installs Python's Ctrl-C handler even when this test process was started with
    SIGINT ignored (a background job of a shell without job control), which the command
    would otherwise inherit, and never see the Ctrl-C these tests send."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_shipml_run_ends_the_run_failed_and_leaves_no_worker(
    config: ProjectConfig, project: Path
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    proc = subprocess.Popen(
        [*SHIPML, "run"],
        cwd=project,
        env=env,
        preexec_fn=_ctrl_c_as_a_terminal_sends_it,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = ""
    while "split" not in seen:  # the run has started: its steps are being shown
        line = proc.stderr.readline()
        assert line, f"shipml run ended early: {seen}"
        seen += line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    c = client(config)
    (run,) = c.search_runs([c.get_experiment_by_name("penguins").experiment_id])
    assert run.info.status == "FAILED"
    deadline = time.monotonic() + 10
    while _workers_in(project) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _workers_in(project) == []


def test_ctrl_c_while_the_command_waits_for_the_worker_leaves_no_run_running(
    config: ProjectConfig, project: Path
):
    """The worker (its own process group) goes on with what it was sent after the command
    gave up; whatever run that makes is ended, not left RUNNING."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    proc = subprocess.Popen(
        [*SHIPML, "run"],
        cwd=project,
        env=env,
        preexec_fn=_ctrl_c_as_a_terminal_sends_it,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not (workers := _workers_in(project)):
        assert time.monotonic() < deadline and proc.poll() is None, "no worker started"
        time.sleep(0.01)
    (worker_pid,) = workers
    os.kill(worker_pid, signal.SIGSTOP)  # the command is now bound to wait for start_run
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    os.kill(worker_pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "waiting for the tracking worker" in err  # the wait is explained
    deadline = time.monotonic() + 30
    while _workers_in(project) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _workers_in(project) == []
    c = client(config)
    experiment = c.get_experiment_by_name("penguins")
    runs = c.search_runs([experiment.experiment_id]) if experiment else []
    assert [r.info.status for r in runs if r.info.status != "FAILED"] == []


# A command, in its own process, that starts a run through a worker, says the run id and
# the worker's pid, then (when told to on its input) posts a tag, says so, and waits.
COMMAND = """\
import sys, time
from pathlib import Path
from shipml.config import load_config
from shipml.tracking.remote import remote_tracker_for
from shipml.tracking.worker import TrackingWorker
worker = TrackingWorker.start()
run_id = remote_tracker_for(worker, load_config(Path(sys.argv[1]))).start_run("x", {})
print(run_id, worker.process.pid, flush=True)
sys.stdin.readline()
worker.post("tracker", "set_tags", run_id, {"sent": "before dying"})
print("posted", flush=True)
time.sleep(600)
"""


def _start_command(project: Path) -> tuple[subprocess.Popen[str], str, int]:
    command = subprocess.Popen(
        [sys.executable, "-c", COMMAND, str(project)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert command.stdout is not None
    run_id, worker_pid = command.stdout.readline().split()
    return command, run_id, int(worker_pid)


def _status_once_settled(config: ProjectConfig, run_id: str) -> str:
    deadline = time.monotonic() + 30
    while (status := client(config).get_run(run_id).info.status) == "RUNNING":
        assert time.monotonic() < deadline, "the run was left RUNNING"
        time.sleep(0.1)
    return str(status)


def test_a_run_left_open_by_a_command_that_dies_is_ended_failed_by_the_worker(
    config: ProjectConfig, project: Path
):
    command, run_id, _ = _start_command(project)
    assert client(config).get_run(run_id).info.status == "RUNNING"
    command.kill()  # no finally, no end_run: the worker sees its input end
    command.wait()
    assert _status_once_settled(config, run_id) == "FAILED"


def test_what_a_command_sent_before_it_died_is_still_recorded_and_its_run_ended(
    config: ProjectConfig, project: Path
):
    command, run_id, worker_pid = _start_command(project)
    assert command.stdin is not None and command.stdout is not None
    os.kill(worker_pid, signal.SIGSTOP)  # it answers only after the command is gone
    command.stdin.write("go\n")
    command.stdin.flush()
    assert command.stdout.readline().strip() == "posted"
    command.kill()
    command.wait()
    os.kill(worker_pid, signal.SIGCONT)
    assert _status_once_settled(config, run_id) == "FAILED"
    assert client(config).get_run(run_id).data.tags["sent"] == "before dying"


def test_an_interrupt_in_the_middle_of_a_request_ends_the_run_failed(config: ProjectConfig):
    worker = TrackingWorker.start()
    remote = remote_tracker_for(worker, config)
    run_id = remote.start_run("probe", {})
    os.kill(worker.process.pid, signal.SIGSTOP)  # it reads nothing: the pipe fills
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    # Ctrl-C as a terminal delivers it, even if this process was started with SIGINT
    # ignored (a background job of a shell without job control).
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            remote.log_text(run_id, "x" * 2_000_000, "big.txt")  # interrupted half-written
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, saved)
        os.kill(worker.process.pid, signal.SIGCONT)
    assert not worker.usable
    remote.end_run(run_id, "FINISHED")  # nothing more is sent
    worker.close()
    assert worker.process.returncode == 0
    assert client(config).get_run(run_id).info.status == "FAILED"


def test_a_project_module_named_like_one_mlflow_imports_does_not_break_the_worker(
    project: Path,
):
    (project / "secrets.py").write_text('raise RuntimeError("the project\'s secrets.py")\n')
    console_script = Path(sys.executable).parent / "shipml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    done = subprocess.run(
        [str(console_script), "run", "-p", "n_estimators=5"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "registered penguins/1" in done.stdout


def _workers_in(folder: Path) -> list[int]:
    """Processes running the tracking worker with ``folder`` as their working folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"shipml.tracking.worker" in cmdline and Path(cwd) == folder.resolve():
            found.append(int(entry.name))
    return found


def test_tracker_for_still_tracks_in_process(config: ProjectConfig):
    tracker = tracker_for(config)
    run_id = tracker.start_run("probe", {"k": "v"})
    tracker.end_run(run_id, "FINISHED")
    assert client(config).get_run(run_id).data.tags["k"] == "v"
