"""Pipelines of plain Python steps: DAG, local runner with caching, run context.

The decorators load with the package; the runner and the run context (pandas, the
data and model layers) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipml.lazy import lazy_names
from shipml.pipeline.step import Graph, Pipeline, Step, dataset, pipeline, step

if TYPE_CHECKING:
    from shipml.pipeline.context import (
        DatasetInput,
        log_metric,
        log_metrics,
        package_model,
        report_intermediate,
    )
    from shipml.pipeline.loading import load_pipeline
    from shipml.pipeline.result import RunResult, StepResult
    from shipml.pipeline.runner import run_pipeline

_LAZY = {
    "DatasetInput": "shipml.pipeline.context",
    "log_metric": "shipml.pipeline.context",
    "log_metrics": "shipml.pipeline.context",
    "package_model": "shipml.pipeline.context",
    "report_intermediate": "shipml.pipeline.context",
    "RunResult": "shipml.pipeline.result",
    "StepResult": "shipml.pipeline.result",
    "load_pipeline": "shipml.pipeline.loading",
    "run_pipeline": "shipml.pipeline.runner",
}


if not TYPE_CHECKING:  # for type checkers the imports above declare the names
    __getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())

__all__ = [
    "DatasetInput",
    "Graph",
    "Pipeline",
    "RunResult",
    "Step",
    "StepResult",
    "dataset",
    "load_pipeline",
    "log_metric",
    "log_metrics",
    "package_model",
    "pipeline",
    "report_intermediate",
    "run_pipeline",
    "step",
]
