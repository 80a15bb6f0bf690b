"""shipml: from a notebook to a tracked, tested, packaged and served model.

The public API, for pipeline files and notebooks::

    from shipml import step, pipeline, dataset, log_metrics, package_model, model_input
"""

from shipml.config import ProjectConfig, load_config
from shipml.errors import ShipmlError
from shipml.model import ModelPackage, model_input
from shipml.pipeline import (
    DatasetInput,
    dataset,
    log_metric,
    log_metrics,
    package_model,
    pipeline,
    run_pipeline,
    step,
)

__version__ = "0.1.0"

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
    "run_pipeline",
    "step",
]
