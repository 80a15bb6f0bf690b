"""``shipml ci run``: the CI stages on this machine, in order, stopping at the first
failure; and ``shipml ci check``, the first stage (lint and unit tests).

Each stage's commands run as `shipml` subprocesses in the project, exactly as the CI
jobs run them, with the deploy target set to ``[ci] local_target`` (podman). A stage
that needs approval (promotion) runs only with ``approve``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from shipml.cicd.stages import Stage, stages
from shipml.config import ProjectConfig
from shipml.errors import CIError


@dataclass
class StageResult:
    name: str
    status: str  # passed | failed | skipped | not run
    seconds: float = 0.0
    command: str = ""  # the failing command
    exit_code: int = 0
    reason: str = ""


@dataclass
class CIRun:
    results: list[StageResult] = field(default_factory=list)

    @property
    def failed(self) -> StageResult | None:
        return next((r for r in self.results if r.status == "failed"), None)


Reporter = Callable[[str, str], None]  # (stage, line)
SUMMARY = "results/ci-summary.md"  # the job summary of `shipml ci run` (GitHub's, locally)


def _why(output: str, argv: list[str], code: int) -> str:
    """A short reason for a failed command, from its own last lines."""
    if code == 2 and "No such command" in output:
        return f"this version of shipml has no `{argv[0]}` command"
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else f"exit code {code}"


def run_command(
    argv: list[str], cwd: Path, emit: Reporter, stage: str, python: str = sys.executable
) -> tuple[int, str]:
    """Run `shipml ARGV` in ``cwd`` with ``python``, streaming its output to ``emit``."""
    # Where GitHub Actions takes the job summary from; locally, a file in the project.
    env = dict(os.environ)
    env.setdefault("GITHUB_STEP_SUMMARY", str(cwd / SUMMARY))
    (cwd / SUMMARY).parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [python, "-m", "shipml", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        emit(stage, line.rstrip("\n"))
        tail = [*tail[-40:], line]
    return proc.wait(), "".join(tail)


def run_stages(
    config: ProjectConfig,
    *,
    only: list[str] | None = None,
    approve: bool = False,
    emit: Reporter | None = None,
    install: bool = True,
) -> CIRun:
    """Run the stages in order; stops at the first failure (the rest are "not run").
    With ``install``, first run the workflows' install line in ``.shipml/ci/venv`` and run
    the stages with the shipml it installed, as a CI job does; else with this one."""
    emit = emit or (lambda _stage, _line: None)
    chosen: list[Stage] = stages(config, config.ci.local_target)
    names = [s.name for s in chosen]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise CIError(f"unknown stage(s) {', '.join(unknown)}", hint=f"stages: {', '.join(names)}")
    python = sys.executable
    if install:
        from shipml.cicd.install import install as install_shipml

        python = str(install_shipml(config, lambda line: emit("install", line)))
    result = CIRun()
    failed = False
    for stage in chosen:
        if failed:
            result.results.append(StageResult(stage.name, "not run"))
            continue
        if only and stage.name not in only:
            result.results.append(StageResult(stage.name, "skipped", reason="not selected"))
            continue
        if stage.manual and not approve:
            result.results.append(
                StageResult(stage.name, "skipped", reason="needs approval (--approve)")
            )
            continue
        started = time.perf_counter()
        res = StageResult(stage.name, "passed")
        for argv in stage.commands:
            emit(stage.name, "$ " + shlex.join(["shipml", *argv]))
            code, output = run_command(argv, config.root, emit, stage.name, python)
            if code != 0:
                res = StageResult(
                    stage.name,
                    "failed",
                    command=shlex.join(["shipml", *argv]),
                    exit_code=code,
                    reason=_why(output, argv, code),
                )
                failed = True
                break
        res.seconds = time.perf_counter() - started
        result.results.append(res)
    return result


# The unit tests: everything but the suites that need a trained model or a server (those
# run in the model-tests stage, through `shipml test`).
UNIT = "not (data or model or api or browser)"
NO_TESTS = 5  # pytest's exit code when nothing was selected

# Syntax errors, undefined names, comparisons that are always wrong: the classic set a
# project without a lint configuration of its own can be held to.
ERRORS_ONLY = "E9,F63,F7,F82"


def _has_ruff_config(root: Path) -> bool:
    if (root / "ruff.toml").is_file() or (root / ".ruff.toml").is_file():
        return True
    pyproject = root / "pyproject.toml"
    return pyproject.is_file() and "[tool.ruff" in pyproject.read_text(encoding="utf-8")


def check(config: ProjectConfig, emit: Reporter | None = None) -> list[str]:
    """Lint (ruff, when installed: the project's own ruff settings, or only ERRORS_ONLY
    without any) and the project's unit tests (pytest on tests/, without the suites that
    need a model: those are `shipml test`'s); raises
    CIError naming the tool that failed. Returns what ran."""
    emit = emit or (lambda _stage, _line: None)
    root = config.root
    ran: list[str] = []
    tools: list[tuple[str, list[str]]] = []
    if find_spec("ruff") is not None:
        lint = [sys.executable, "-m", "ruff", "check", "."]
        if not _has_ruff_config(root):  # then only what is surely a bug
            lint += ["--select", ERRORS_ONLY]
        tools.append(("ruff", lint))
    if (root / "tests").is_dir():
        tools.append(("pytest", [sys.executable, "-m", "pytest", "-q", "-m", UNIT, "tests"]))
    if not tools:
        raise CIError(
            f"nothing to check in {root}: no tests/ folder and no ruff",
            hint="add tests under tests/ (shipml init makes some)",
        )
    for name, argv in tools:
        proc = subprocess.Popen(
            argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        tail = ""
        for line in proc.stdout:
            emit(name, line.rstrip("\n"))
            tail = line
        code = proc.wait()
        if name == "pytest" and code == NO_TESTS:
            ran.append("pytest (no unit tests)")
            continue
        if code != 0:
            raise CIError(
                f"{name} failed (exit code {code}): {tail.strip()}",
                hint=f"run `python {shlex.join(argv[1:])}` in the project and fix what it reports",
            )
        ran.append(name)
    return ran
