"""CI that installs what generated it: `[ci] install` defaults to the exact source of this
shipml, and the generated GitHub workflow runs, step by step, as a runner would run it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipml.cicd import install as ci_install
from shipml.cicd.install import WHEEL_DIR, layered_venv, source
from shipml.config import load_config
from shipml.templates import create_project
from tests.conftest import PODMAN, shipml


@pytest.mark.parametrize(
    ("direct", "settings", "kind", "expected"),
    [
        (None, {}, "index", r"^pip install shipml==\d"),
        (
            None,
            {"SHIPML_CI_INDEX_URL": "https://pypi.acme.io/simple"},
            "index",
            r"^pip install --index-url https://pypi.acme.io/simple shipml==\d",
        ),
        (
            {
                "url": "https://github.com/acme/shipml",
                "vcs_info": {"vcs": "git", "commit_id": "ab12"},
            },
            {},
            "git",
            r"^pip install 'shipml @ git\+https://github.com/acme/shipml@ab12'$",
        ),
        (
            {"url": "file:///src/shipml", "dir_info": {"editable": True}},
            {},
            "wheel",
            r"^pip install ./ci/shipml-.*-py3-none-any.whl$",
        ),
        (
            {"url": "file:///src/shipml"},
            {"SHIPML_CI_INSTALL": "pip install mine"},
            "custom",
            r"^pip install mine$",
        ),
    ],
)
def test_the_install_source_follows_how_shipml_is_installed(
    project: Path, monkeypatch: pytest.MonkeyPatch, direct, settings, kind, expected
):
    """How this shipml was installed (its direct_url.json) cannot be changed in a test
    run: the answer of that one file is given."""
    monkeypatch.setattr(ci_install, "_direct_url", lambda: direct)
    found = source(load_config(project, environ=settings))
    assert found.kind == kind and re.match(expected, found.line), found.line


def test_an_install_line_that_fails_or_installs_no_shipml_is_refused(project: Path):
    toml = project / "shipml.toml"
    toml.write_text(toml.read_text() + '\n[ci]\ninstall = "pip --version"\n')
    done = shipml("ci", "run", "--stage", "check", cwd=project)
    assert done.returncode == 14 and "did not install shipml" in done.stderr
    toml.write_text(toml.read_text().replace("pip --version", "pip install ./nowhere.whl"))
    done = shipml("ci", "run", "--stage", "check", cwd=project)
    assert done.returncode == 14 and "the install line failed" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_ci_virtualenv_pip_runs_its_python_even_in_an_odd_folder_name(tmp_path: Path):
    python = layered_venv(tmp_path / "it's my $project" / "venv")  # quote, space, $
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for pip in ("pip", "pip3"):
        done = subprocess.run(
            [str(python.parent / pip), "debug"], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        assert f"sys.executable: {python}\n" in done.stdout  # so it installs into this venv
    imported = subprocess.run(
        [str(python), "-c", "import shipml"], capture_output=True, text=True, env=env
    )
    assert imported.returncode != 0  # shipml itself must come from the install line


def test_without_pip_here_the_ci_virtualenv_gets_its_own(tmp_path: Path, monkeypatch):
    """An environment made without pip (uv's, say): building one with all of shipml's
    dependencies and no pip is minutes of installing, so pip's absence is given."""
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pip" else found(name, *a)
    )
    python = layered_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(python.parent / "pip"), "--version"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 and f"from {tmp_path / 'venv'}" in done.stdout, done.stdout


# -- the GitHub workflow, run as a runner runs it ------------------------------------------

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _value(term: str, context: dict[str, Any]) -> str:
    term = term.strip()
    if term[:1] == "'" and term[-1:] == "'":
        return term[1:-1]
    scope, _, name = term.partition(".")
    return str(context[scope].get(name, ""))


def _condition(expr: str, context: dict[str, Any]) -> bool:
    """The expressions the generated workflow uses: `a == b` joined by `&&`."""
    clauses = [c.split("==") for c in expr.split("&&")]
    return all(_value(a, context) == _value(b, context) for a, b in clauses)


def _expand(text: str, context: dict[str, Any]) -> str:
    return EXPR.sub(lambda m: _value(m.group(1), context), text)


def run_github_workflow(
    repo: Path, work: Path, event: str, secrets: dict[str, str]
) -> list[tuple[str, str]]:
    """Run every job of the repository's workflow that ``event`` triggers, in order, each
    in a fresh checkout with a runner's environment variables; returns (job, status)."""
    doc = yaml.safe_load((repo / ".github/workflows/shipml.yml").read_text())
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    ref = "refs/pull/1/merge" if event == "pull_request" else "refs/heads/main"
    github = {"event_name": event, "ref": ref, "sha": sha}
    context = {"github": github, "secrets": secrets, "repo": str(repo)}
    ran: list[tuple[str, str]] = []
    for name, job in doc["jobs"].items():
        if any(status != "success" for need, status in ran if need in job.get("needs", [])):
            ran.append((name, "skipped"))
            continue
        if "if" in job and not _condition(job["if"], context):
            ran.append((name, "skipped"))
            continue
        ran.append((name, _run_job(name, job, doc, work / name, context)))
        if ran[-1][1] != "success":
            break
    return ran


def _run_job(name: str, job: dict, doc: dict, home: Path, context: dict[str, Any]) -> str:
    workspace, temp = home / "work", home / "temp"
    temp.mkdir(parents=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPML_", "GITHUB_"))}
    env = {
        **base,
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKFLOW": doc["name"],
        "GITHUB_JOB": name,
        "GITHUB_EVENT_NAME": context["github"]["event_name"],
        "GITHUB_REF": context["github"]["ref"],
        "GITHUB_SHA": context["github"]["sha"],
        "GITHUB_REPOSITORY": "acme/penguins",
        "GITHUB_WORKSPACE": str(workspace),
        "RUNNER_OS": "Linux",
        "RUNNER_TEMP": str(temp),
        "HOME": str(home),
    }
    env.update({k: _expand(str(v), context) for k, v in (doc.get("env") or {}).items()})
    for step in job["steps"]:
        uses = step.get("uses", "")
        if uses.startswith("actions/checkout@"):
            subprocess.run(
                ["git", "clone", "-q", context["repo"], str(workspace)], check=True, timeout=120
            )
            continue
        if uses.startswith("actions/setup-python@"):
            venv = layered_venv(home / "python")  # the runner's Python, with pip
            env["PATH"] = f"{venv.parent}{os.pathsep}{env['PATH']}"
            continue
        if uses.startswith("actions/upload-artifact@"):
            _keep_artifact(step.get("with") or {}, workspace, home / "artifacts")
            continue
        assert not uses, f"the workflow uses {uses}, which this test cannot run"
        step_env = {**env, **{k: _expand(str(v), context) for k, v in step.get("env", {}).items()}}
        done = subprocess.run(
            ["bash", "-e", "-c", _expand(step["run"], context)],
            cwd=workspace,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            shown = shlex.quote(step["run"])
            print(f"{name} / {step.get('name')}: {shown}\n{done.stdout}\n{done.stderr}")
            return "failure"
    return "success"


def _keep_artifact(given: dict[str, Any], workspace: Path, store: Path) -> None:
    """What actions/upload-artifact does: the files its ``path`` lines name, kept under
    the artifact's ``name`` (none found is an error unless ``if-no-files-found``
    says ignore)."""
    kept = store / given["name"]
    found = [f for line in str(given["path"]).splitlines() for f in workspace.glob(line.strip())]
    assert found or given.get("if-no-files-found") == "ignore", f"no files for {given}"
    for file in found:
        target = kept / file.relative_to(workspace)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)


@pytest.mark.xdist_group(PODMAN)  # it builds images
def test_the_generated_github_workflow_runs_step_by_step(tmp_path: Path, base_image: str):
    """A fresh project, `shipml ci init` and nothing edited but the shared team settings
    (CI secrets) and the offline base image (no registry here): the jobs a pull request
    triggers pass, each installing shipml with the workflow's own install line in a fresh
    checkout; deploys and promotion are skipped."""
    repo = create_project(tmp_path / "penguins", "penguins")
    toml = repo / "shipml.toml"
    text = toml.read_text().replace('suites = ["unit", "data", "model", "api", "browser"]', "")
    # The suites that need no server nor browser: what is tested here is the runner, not them.
    toml.write_text(
        text.replace("[tests]\n", '[tests]\nsuites = ["unit", "data", "model"]\n')
        + f'\n[containers]\nbase_image = "{base_image}"\n'
    )
    done = shipml("ci", "init", "--provider", "github", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert f"commit the wheel it installs: {WHEEL_DIR}/" in done.stdout
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "ci"], cwd=repo, check=True)
    shared = tmp_path / "team"
    secrets = {
        "SHIPML_TRACKING_URI": f"sqlite:///{shared}/mlflow.db",
        "SHIPML_ARTIFACTS_ROOT": str(shared / "artifacts"),
    }
    ran = run_github_workflow(repo, tmp_path / "runner", "pull_request", secrets)
    assert ran == [
        ("check", "success"),
        ("pipeline", "success"),
        ("model-tests", "success"),
        ("report", "success"),
        ("images", "success"),
        ("deploy-staging", "skipped"),
        ("analysis", "skipped"),
        ("promote", "skipped"),
    ]
    # The report job kept the model card (the first run has no champion to compare with).
    card = tmp_path / "runner/report/artifacts/shipml-report/results/model-card.html"
    assert "<html" in card.read_text().lower()
