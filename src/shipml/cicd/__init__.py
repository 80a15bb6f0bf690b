"""CI/CD: workflow files whose stages are shipml commands, and the same stages run
locally (`shipml ci run`)."""

from shipml.cicd.runner import CIRun, StageResult, check, run_stages
from shipml.cicd.stages import Stage, stages
from shipml.cicd.workflows import FILES, render, write

__all__ = [
    "FILES",
    "CIRun",
    "Stage",
    "StageResult",
    "check",
    "render",
    "run_stages",
    "stages",
    "write",
]
