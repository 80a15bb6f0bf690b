"""shipml's pytest plugin: fixtures for testing a model, ready-made checks as test items,
and the results files.

Load it with ``-p shipml.testing.plugin`` (what ``shipml test`` does) or
``pytest_plugins = ["shipml.testing.plugin"]`` in a conftest.py. Options:

  --shipml-model REF     the model under test (default: [tests] ref, else the newest)
  --shipml-against URL   a running server for the api and browser suites (default: one
                         is started on a free port for the session)
  --shipml-results DIR   write results.json and report.html there

Fixtures: ``model`` (the model under test: ``predict``, ``holdout``, ``signature``,
``package``), ``holdout`` (X, y), ``dataset`` (the training snapshot as a DataFrame),
``reference`` (the reference profile), ``server_url``, ``shipml_config``,
``results_dir``, ``record_metric(name, value)`` and ``attach(path)``.

Passing ``shipml.toml`` as a test path collects the checks configured in ``[tests.*]``:
``shipml.toml::data::schema``, ``shipml.toml::model::quality``, ... Every test gets a
suite marker (``data``, ``model``, ``api``, ``browser``; ``unit`` when it has none), so
``-m "data or model"`` selects suites.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipml.config import ProjectConfig, load_config
from shipml.errors import BrowserUnavailable, ShipmlError, TestingError
from shipml.testing.check import SUITES, Check, CheckResult, Env, NotApplicable
from shipml.testing.checks import all_checks
from shipml.testing.session import SessionState, unrun_checks
from shipml.testing.subject import Subject

STATE_KEY = pytest.StashKey["SessionState"]()


def _state(config: pytest.Config) -> SessionState:
    return config.stash[STATE_KEY]


# -- options and markers -------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shipml", "shipml model testing")
    group.addoption(
        "--shipml-model",
        default=None,
        metavar="REF",
        help="model under test: NAME@ALIAS, NAME/VERSION or a package folder",
    )
    group.addoption(
        "--shipml-against",
        default=None,
        metavar="URL",
        help="a running model server for the api and browser suites",
    )
    group.addoption(
        "--shipml-results",
        default=None,
        metavar="DIR",
        help="write results.json and report.html into DIR",
    )
    group.addoption(
        "--shipml-suites",
        default=None,
        metavar="SUITES",
        help="comma-separated suites whose every configured check must run (what `shipml "
        "test` passes): one deselected (-k, --deselect, addopts) is an error",
    )
    group.addoption(
        "--shipml-resolved",
        default=None,
        metavar="FILE",
        help="the model under test as `shipml test` resolved it (its package folder and "
        "registry record, for the same REF): read instead of asking the registry",
    )
    group.addoption(
        "--shipml-project",
        default=None,
        metavar="DIR",
        help="the shipml project (default: found from the current folder)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for suite, what in (
        ("unit", "the project's own unit tests (steps, features)"),
        ("data", "data tests: schema, ranges, leakage, skew, ..."),
        ("model", "model tests: quality, slices, behaviour, latency, ..."),
        ("api", "tests against a running model server"),
        ("browser", "tests that drive the demo page in a real browser"),
    ):
        config.addinivalue_line("markers", f"{suite}: {what}")
    config.addinivalue_line(
        "markers", "score(*ids): ML Test Score tests this test automates, e.g. 'data-7'"
    )
    config.stash[STATE_KEY] = SessionState(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    if STATE_KEY in config.stash:
        config.stash[STATE_KEY].stop()


# -- ready-made checks as items ------------------------------------------------------


class ChecksFile(pytest.File):
    """``shipml.toml`` as a test file: one item per configured check."""

    def collect(self) -> Iterator[pytest.Item]:
        state = _state(self.config)
        config = load_config(self.path.parent)
        state._config = state._config or config
        for check in all_checks():
            if check.enabled(config):
                item = CheckItem.from_parent(self, name=f"{check.suite}::{check.name}", check=check)
                item.add_marker(getattr(pytest.mark, check.suite))
                yield item


class CheckFailed(Exception):
    pass


class CheckItem(pytest.Item):
    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.result: CheckResult | None = None

    def runtest(self) -> None:
        state = _state(self.config)
        env = Env(output=state.output, server_url=state.server_url)
        try:
            subject = state.subject()
        except TestingError as exc:
            if "no registered version" in exc.message:  # plain pytest before `shipml run`
                pytest.skip(f"{exc.message} ({exc.hint})")
            raise
        try:
            self.result = self.check.run(subject, env)
        except NotApplicable as exc:
            pytest.skip(f"not applicable: {exc}")
        except BrowserUnavailable as exc:
            if os.environ.get("CI", "").lower() == "true":
                raise  # in CI a missing browser is a failure
            pytest.skip(f"{exc.message} ({exc.hint})")
        if not self.result.passed:
            raise CheckFailed(self.result.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        exc = excinfo.value
        if isinstance(exc, CheckFailed):
            return f"{self.check.id} ({self.check.title}): {exc}"
        if isinstance(exc, ShipmlError):
            hint = f"\nhint: {exc.hint}" if exc.hint else ""
            return f"{self.check.id}: {exc.kind}: {exc.message}{hint}"
        # A check that crashes is a bug or a configuration it cannot handle: one line
        # with where, not pages of library internals.
        tb = excinfo.traceback[-1]
        return (
            f"{self.check.id} could not run: {type(exc).__name__}: {exc} "
            f"({Path(str(tb.path)).name}:{tb.lineno + 1})"
        )

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.check.id}: {self.check.title}"


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name == "shipml.toml":
        return ChecksFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(s) for s in SUITES):
            item.add_marker(pytest.mark.unit)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shipml_config(request: pytest.FixtureRequest) -> ProjectConfig:
    """The project's configuration (shipml.toml with environment overrides)."""
    return _state(request.config).config


def _subject_or_skip(config: pytest.Config) -> Subject:
    """The subject; a project with no model yet skips (plain ``pytest`` before the first
    ``shipml run``), any other problem fails with its message, not a traceback."""
    try:
        return _state(config).subject()
    except ShipmlError as exc:
        error = exc
    if isinstance(error, TestingError) and "no registered version" in error.message:
        pytest.skip(f"{error.message} ({error.hint})")
    pytest.fail(f"{error.kind}: {error.message}\nhint: {error.hint}", pytrace=False)


@pytest.fixture(scope="session")
def model(request: pytest.FixtureRequest) -> Subject:
    """The model under test: ``model.predict(X)`` (labels, probabilities) through the
    serving path, ``model.holdout``, ``model.signature``, ``model.package``."""
    return _subject_or_skip(request.config)


@pytest.fixture(scope="session")
def holdout(model: Subject) -> tuple[Any, Any]:
    """The held-out rows the model was validated on: (X in the model convention, y)."""
    return model.holdout


@pytest.fixture(scope="session")
def dataset(model: Subject) -> Any:
    """The training dataset snapshot as a DataFrame (digest verified)."""
    return model.dataset


@pytest.fixture(scope="session")
def reference(model: Subject) -> dict[str, Any]:
    """The reference profile of the validation data (per-column summary, histograms)."""
    return model.package.profile


@pytest.fixture(scope="session")
def server_url(request: pytest.FixtureRequest) -> str:
    """A running model server serving the model under test (``--shipml-against`` or one
    started for the session)."""
    _subject_or_skip(request.config)
    try:
        return _state(request.config).server_url()
    except ShipmlError as exc:
        error = exc
    pytest.fail(f"{error.kind}: {error.message}\nhint: {error.hint}", pytrace=False)


@pytest.fixture
def record_metric(request: pytest.FixtureRequest) -> Any:
    """``record_metric(name, value)``: a number for results.json (``suite.name``), for
    gates and reports."""
    store: dict[str, float] = {}
    request.node._shipml_metrics = store

    def record(name: str, value: float) -> None:
        store[name] = float(value)

    return record


@pytest.fixture
def attach(request: pytest.FixtureRequest) -> Any:
    """``attach(path)``: a file (a PNG screenshot shows in report.html) for the results."""
    files: list[str] = []
    request.node._shipml_attachments = files

    def add(path: str | Path) -> None:
        files.append(str(path))

    return add


@pytest.fixture(scope="session")
def results_dir(request: pytest.FixtureRequest) -> Path:
    """Where results (and screenshots) go."""
    out = _state(request.config).output
    out.mkdir(parents=True, exist_ok=True)
    return out


# -- results -------------------------------------------------------------------------


def _suite(item: pytest.Item) -> str:
    return next((s for s in SUITES if item.get_closest_marker(s)), "unit")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    state = _state(item.config)
    record = next((r for r in state.records if r["nodeid"] == item.nodeid), None)
    if record is None:
        check = getattr(item, "check", None)
        record = {
            "nodeid": item.nodeid,
            "name": item.name,
            "suite": _suite(item),
            "check": check.id if check else None,
            "title": check.title
            if check
            else (item.obj.__doc__ or "").strip().split("\n")[0]
            if hasattr(item, "obj")
            else "",
            "score": list(check.score) if check else _score_ids(item),
            "outcome": "passed",
            "duration": 0.0,
            "message": "",
            "metrics": {},
            "details": [],
            "attachments": [],
        }
        state.records.append(record)
    record["duration"] += report.duration
    if report.failed:
        if record["outcome"] == "passed":
            record["outcome"] = "failed" if report.when == "call" else "error"
            record["message"] = _message(report)
        elif report.when == "teardown":  # pytest (and junit.xml) count this error apart
            state.records.append(
                {
                    **record,
                    "nodeid": item.nodeid + "::teardown",
                    "outcome": "error",
                    "message": _message(report),
                    "metrics": {},
                    "details": [],
                    "attachments": [],
                }
            )
    elif report.skipped and record["outcome"] == "passed":
        record["outcome"] = "skipped"
        longrepr = report.longrepr
        record["message"] = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)
    if report.when == "call":
        result: CheckResult | None = getattr(item, "result", None)
        if result is not None:
            record["metrics"] = dict(result.metrics)
            record["details"] = result.details
            record["attachments"] = list(result.attachments)
            if report.passed:
                record["message"] = result.message
        # From the record_metric and attach fixtures (not user_properties: pytest writes
        # those into junit.xml as <properties>, which the JUnit schema does not allow).
        record["metrics"].update(getattr(item, "_shipml_metrics", {}))
        record["attachments"] += getattr(item, "_shipml_attachments", [])


def _score_ids(item: pytest.Item) -> list[str]:
    return [str(a) for m in item.iter_markers("score") for a in m.args]


def _message(report: pytest.TestReport) -> str:
    text = str(report.longreprtext or "")
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E ")]
    if errors:
        return "\n".join(e[2:].strip() for e in errors[:6])
    return "\n".join(lines[-6:])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state.results_dir is None:
        return
    from shipml.testing.report import write_results

    unrun = unrun_checks(state, session.config.getoption("shipml_suites") or "")
    if unrun:
        state.records += unrun
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        terminal = session.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            more = f" (and {len(unrun) - 1} more)" if len(unrun) > 1 else ""
            terminal.write_line(f"\nERROR {unrun[0]['message']}{more}")
    subject = None
    with contextlib.suppress(ShipmlError):
        subject = state.subject()
    write_results(state.results_dir, state.records, subject, against=state.against)
