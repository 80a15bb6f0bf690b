"""What a pipeline run returns: each step's result and the run's (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipml.data import Snapshot
from shipml.pipeline.cache import StoredOutput
from shipml.tracking import VersionInfo


@dataclass
class StepResult:
    name: str
    status: str  # done | cached | failed | skipped
    seconds: float = 0.0
    key: str = ""
    outputs: dict[str, StoredOutput] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    hint: str | None = None
    code_files: list[str] = field(default_factory=list)
    traceback_file: str | None = None


@dataclass
class RunResult:
    run_id: str
    pipeline: str
    status: str  # FINISHED | FAILED
    steps: list[StepResult]
    params: dict[str, Any]
    metrics: dict[str, float]
    datasets: dict[str, Snapshot]
    seconds: float
    model_version: VersionInfo | None = None
    model_created: bool = False
    failed_step: str | None = None
    error: str | None = None
    traceback_file: str | None = None

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    @property
    def executed(self) -> list[str]:
        return [s.name for s in self.steps if s.status == "done"]

    @property
    def cached(self) -> list[str]:
        return [s.name for s in self.steps if s.status == "cached"]
