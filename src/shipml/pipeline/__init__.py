"""Pipelines of plain Python steps: DAG, local runner with caching, run context."""

from shipml.pipeline.context import DatasetInput, log_metric, log_metrics, package_model
from shipml.pipeline.runner import RunResult, StepResult, load_pipeline, run_pipeline
from shipml.pipeline.step import Graph, Pipeline, Step, dataset, pipeline, step

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
    "run_pipeline",
    "step",
]
