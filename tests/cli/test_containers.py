"""``shipml build``, ``base``, ``notebook`` and ``data export/verify`` through the real
command: mistakes get one message, a hint and their exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd

from tests.conftest import children_of, shipml, shipml_here


def test_unknown_kind_and_stray_argument(project: Path) -> None:
    result = shipml("build", "lambda", cwd=project)
    assert result.returncode == 15, result.stderr
    assert "container error: unknown image kind 'lambda'" in result.stderr
    assert "serve, train, test, data, notebook" in result.stderr
    assert "Traceback" not in result.stderr
    result = shipml("build", "train", "penguins/1", cwd=project)
    assert result.returncode == 15 and "takes no argument" in result.stderr


def test_missing_engine_is_a_clear_error(project: Path, tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}  # no podman, docker or buildah here (nor git)
    result = shipml("build", "data", cwd=project, env=env)
    assert result.returncode == 15, result.stderr
    assert "no container engine" in result.stderr.lower() or "is not installed" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    result = shipml("build", "data", "--engine", "rkt", cwd=project)
    assert result.returncode == 15 and "unknown container engine 'rkt'" in result.stderr


def test_data_export_then_verify(project: Path) -> None:
    assert shipml("data", "add", "penguins", "data/penguins.csv", cwd=project).returncode == 0
    result = shipml("data", "export", "penguins", "bundle", cwd=project)
    assert result.returncode == 0, result.stderr
    digest = json.loads((project / "bundle" / "manifest.json").read_text())["digest"]
    result = shipml("data", "verify", "bundle", "--copy-to", "copy", cwd=project)
    assert result.returncode == 0 and digest in " ".join(result.stdout.split())
    assert (project / "copy" / "data.parquet").is_file()
    (project / "bundle" / "data.parquet").write_bytes(b"PAR1 damaged")
    result = shipml("data", "verify", "bundle", "--copy-to", "copy2", cwd=project)
    assert result.returncode == 5 and "cannot be read as Parquet" in result.stderr
    assert not (project / "copy2").exists()  # nothing copied from a bad bundle


def test_data_verify_checks_a_snapshot_in_the_store_by_name(project: Path) -> None:
    assert shipml_here("data", "add", "penguins", "data/penguins.csv", cwd=project).returncode == 0
    result = shipml_here("data", "verify", "penguins", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "verified penguins@1 in the store: 344 rows" in result.stdout
    stored = next((project / ".shipml").rglob("datasets/objects/*/data.parquet"))
    frame = pd.read_parquet(stored)
    frame.iloc[0, 2] = 1.0  # one cell changed after the snapshot was written
    frame.to_parquet(stored, index=False)
    result = shipml_here("data", "verify", "penguins@1", cwd=project)
    assert result.returncode == 5 and "snapshot penguins@1 is corrupt" in result.stderr
    assert "Traceback" not in result.stderr
    result = shipml_here("data", "verify", "nosuch", cwd=project)
    assert result.returncode == 5
    assert "neither a data bundle folder nor a dataset in the store" in result.stderr


def test_notebook_runs_jupyterlab_on_the_project(project: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    env["JUPYTER_TOKEN"] = "t" * 32
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipml", "notebook", "--no-browser", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2) as r:
                    status = r.status
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.3)
        assert status == 200
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/contents/notebooks?token={'t' * 32}", timeout=10
        ) as r:
            names = [c["name"] for c in json.loads(r.read())["content"]]
        assert "explore.ipynb" in names  # JupyterLab opens on the project folder
        children = children_of(proc.pid)
        assert children, "JupyterLab runs as a child of shipml notebook"
        proc.terminate()  # SIGTERM, as a cancelled job or a closed terminal sends
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{c}").exists() for c in children):
            assert time.monotonic() < deadline, "JupyterLab outlived shipml notebook"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_notebook_on_a_taken_port_is_one_clear_error_before_anything_starts(
    project: Path, tmp_path: Path
) -> None:
    """A taken port was JupyterLab's log line and exit 1 after it loaded (about 10 s), or,
    with --container, podman's error and exit 126 after the image was built."""
    import socket

    import pytest

    from shipml.config import load_config
    from shipml.containers import run_notebook
    from shipml.errors import ContainerError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        here = shipml("notebook", "--no-browser", "--port", port, cwd=project)
        # no engine on PATH: the port is checked before an engine is looked for
        boxed = shipml(
            "notebook", "--container", "--port", port, cwd=project, env={"PATH": str(tmp_path)}
        )
    for result in (here, boxed):
        assert result.returncode == 15, result.stdout + result.stderr
        assert f"cannot listen for JupyterLab on 127.0.0.1:{port}" in result.stderr
        assert "choose another --port" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ContainerError, match="70000 is not a TCP port"):
        run_notebook(load_config(project), port=70000)  # the library checks it too
