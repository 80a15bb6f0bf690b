"""Model tests of this project (the model suite). shipml's ready-made model checks
(quality, baselines, slices, calibration, missing values, parity, latency) are
configured in shipml.toml [tests.model]. The `model` fixture predicts through the
serving path; `holdout` is the package's held-out rows."""

import numpy as np
import pytest

pytestmark = pytest.mark.model

$model_tests
