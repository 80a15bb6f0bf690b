"""shipml: from a notebook to a tracked, tested, packaged and served model.

The public API, for pipeline files and notebooks::

    from shipml import step, pipeline, dataset, log_metrics, package_model, model_input

Only the decorators load with the package; the rest (pandas, pydantic, ONNX tooling)
loads on first use, so that commands start fast and `shipml run` can start its tracking
worker before anything heavy is imported (see ``shipml.tracking.worker``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipml.errors import ShipmlError
from shipml.lazy import lazy_names
from shipml.pipeline import dataset, pipeline, step

if TYPE_CHECKING:
    from shipml.config import ProjectConfig, load_config
    from shipml.model import ModelPackage, model_input
    from shipml.pipeline import (
        DatasetInput,
        log_metric,
        log_metrics,
        package_model,
        report_intermediate,
        run_pipeline,
    )

__version__ = "0.1.0"

_LAZY = {
    "ProjectConfig": "shipml.config",
    "load_config": "shipml.config",
    "ModelPackage": "shipml.model",
    "model_input": "shipml.model",
    "DatasetInput": "shipml.pipeline",
    "log_metric": "shipml.pipeline",
    "log_metrics": "shipml.pipeline",
    "package_model": "shipml.pipeline",
    "report_intermediate": "shipml.pipeline",
    "run_pipeline": "shipml.pipeline",
}


if not TYPE_CHECKING:  # for type checkers the imports above declare the names
    __getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())

__all__ = [
    "DatasetInput",
    "ModelPackage",
    "ProjectConfig",
    "ShipmlError",
    "__version__",
    "dataset",
    "load_config",
    "log_metric",
    "log_metrics",
    "model_input",
    "package_model",
    "pipeline",
    "report_intermediate",
    "run_pipeline",
    "step",
]
