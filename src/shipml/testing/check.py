"""A ready-made check: an id, the suite it belongs to, and what it measured.

Checks are configured in ``shipml.toml`` (``[tests.data]``, ``[tests.model]``,
``[tests.api]``) and run as pytest items next to the project's own tests. Each maps
to tests of Google's ML Test Score (Breck et al., 2017), which ``shipml score`` counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.config.testing import SUITES as TEST_SUITES

SUITES = TEST_SUITES  # one list, in the settings ([gates] suites are checked against it)


@dataclass
class CheckResult:
    """What a check measured. ``message`` says the measurement and the bound it met or
    missed; ``metrics`` are the numbers gates and reports use (``suite.metric``)."""

    passed: bool
    message: str
    metrics: dict[str, float] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)  # rows for the report
    attachments: list[str] = field(default_factory=list)  # files, e.g. screenshots


class NotApplicable(Exception):
    """The check does not apply to this model (e.g. calibration of a regressor): skipped."""


@dataclass
class Env:
    """What a check may use besides the model: a server URL (started on demand) and the
    folder results go to."""

    output: Path
    server_url: Callable[[], str]


@dataclass(frozen=True)
class Check:
    id: str  # "data.schema"
    title: str
    run: Callable[[Any, Env], CheckResult]  # (Subject, Env)
    enabled: Callable[[ProjectConfig], bool]
    score: tuple[str, ...] = ()  # ML Test Score tests this check automates

    @property
    def suite(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]


def always(_: ProjectConfig) -> bool:
    return True


def fmt(value: float) -> str:
    """A number as people read it in a message."""
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.4g}"
