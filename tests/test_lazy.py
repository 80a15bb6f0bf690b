"""The package's lazily loaded names: importing shipml stays quick, and the public names
are what they say."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_importing_shipml_loads_neither_pandas_nor_mlflow():
    """What lets `shipml run` start its worker before anything heavy is loaded."""
    code = (
        "import sys, shipml; from shipml import step, pipeline, dataset; "
        "print(sorted(m for m in ('pandas', 'mlflow', 'pydantic', 'sklearn') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_public_names_are_the_decorators_and_functions_even_after_the_runner_loads():
    import shipml
    import shipml.pipeline.runner  # loading the subpackage must not shadow the names
    from shipml import pipeline, run_pipeline, step
    from shipml.pipeline.step import pipeline as pipeline_decorator
    from shipml.pipeline.step import step as step_decorator

    assert pipeline is pipeline_decorator and step is step_decorator
    assert run_pipeline is sys.modules["shipml.pipeline.runner"].run_pipeline
    assert shipml.ModelPackage.__name__ == "ModelPackage"
    assert {"run_pipeline", "ModelPackage", "step"} <= set(dir(shipml))  # help(), completion
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = shipml.nothing_here
