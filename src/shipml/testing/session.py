"""The state of one pytest session run with shipml's plugin: the project's configuration,
the model under test (loaded on first use), the model server the API checks talk to
(started on first use, stopped at the end), and the results recorded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from shipml.config import ProjectConfig, load_config
from shipml.errors import ShipmlError, TestingError
from shipml.testing.subject import Subject


class SessionState:
    """Per-session state: the config, the subject (loaded on first use), a server."""

    def __init__(self, config: pytest.Config) -> None:
        self.pytest_config = config
        project = config.getoption("shipml_project") or None
        self._config: ProjectConfig | None = None
        self._project = Path(project) if project else None
        self.ref: str | None = config.getoption("shipml_model") or None
        self.against: str | None = config.getoption("shipml_against") or None
        resolved = config.getoption("shipml_resolved")
        self._resolved = Path(resolved) if resolved else None
        results = config.getoption("shipml_results")
        self.results_dir: Path | None = Path(results) if results else None
        self._subject: Subject | None = None
        self._subject_error: ShipmlError | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._server_url: str | None = None
        self._server_log: Path | None = None
        self._server_error: ShipmlError | None = None
        self.records: list[dict[str, Any]] = []

    @property
    def config(self) -> ProjectConfig:
        if self._config is None:
            self._config = load_config(self._project)
        return self._config

    def subject(self) -> Subject:
        if self._subject_error is not None:
            raise self._subject_error
        if self._subject is None:
            try:
                self._subject = Subject.load(self.config, self.ref, resolved=self._resolved)
            except ShipmlError as exc:
                self._subject_error = exc
                raise
        return self._subject

    @property
    def output(self) -> Path:
        return self.results_dir or self.config.tests_output

    def server_url(self) -> str:
        if self.against:
            return self.against.rstrip("/")
        if self._server_error is not None:  # tried once this session: do not wait again
            raise self._server_error
        if self._server_url is None:
            try:
                self._server_url = self._start_server()
            except ShipmlError as exc:
                self._server_error = exc
                raise
        return self._server_url

    def _start_server(self) -> str:
        subject = self.subject()
        target = subject.version.ref if subject.version else str(subject.package.path)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.output.mkdir(parents=True, exist_ok=True)
        self._server_log = self.output / "server.log"
        env = {**os.environ, "SHIPML_AUDIT_ENABLED": "false"}
        with self._server_log.open("wb") as log:  # the child keeps its own descriptor
            self._server = subprocess.Popen(
                [sys.executable, "-m", "shipml", "serve", target, "--port", str(port)],
                cwd=self.config.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise TestingError(
                    f"the model server for {target} exited with code {self._server.returncode}",
                    hint=f"its output is in {self._server_log}",
                )
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return url
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TestingError(
            f"the model server for {target} did not become ready in 60 s",
            hint=f"its output is in {self._server_log}",
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._server.kill()
            self._server = None


def unrun_checks(state: SessionState, chosen: str) -> list[dict[str, Any]]:
    """An ``error`` record for each configured check of the ``chosen`` suites
    (``--shipml-suites``, comma-separated) that did not run (deselected by -k, --deselect
    or the project's addopts): a suite counts as passed only if every check it is
    configured with ran."""
    from shipml.testing.checks import all_checks

    suites = [s for s in chosen.split(",") if s]
    if not suites:
        return []
    ran = {r["check"] for r in state.records}
    return [
        {
            "nodeid": f"shipml.toml::{check.suite}::{check.name}",
            "name": f"{check.suite}::{check.name}",
            "suite": check.suite,
            "check": check.id,
            "title": check.title,
            "score": [],
            "outcome": "error",
            "duration": 0.0,
            "message": f"{check.id} is configured in shipml.toml but did not run (deselected "
            "by -k, --deselect or addopts?); every configured check of a suite must run",
            "metrics": {},
            "details": [],
            "attachments": [],
        }
        for check in all_checks()
        if check.suite in suites and check.enabled(state.config) and check.id not in ran
    ]
