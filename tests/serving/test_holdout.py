"""The hold-out predictions of the live monitor: the child process's are the server's own,
and a child that fails says why."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from shipml.data.drift import FeatureReference, reference_of
from shipml.serving.holdout import holdout_predictions, holdout_predictions_aside
from shipml.serving.predictor import Predictor


def test_the_child_process_answers_what_the_server_would(penguins_package) -> None:
    predictor = Predictor.load(penguins_package.path, name="penguins")
    labels, quality = holdout_predictions(predictor)
    aside, aside_quality, profile = holdout_predictions_aside(penguins_package.path)
    assert aside.dtype == labels.dtype
    assert np.array_equal(aside, labels)
    assert aside_quality == quality and set(quality) == {"accuracy", "f1_macro"}
    # The prediction-drift reference the server builds from the child's profile is the
    # one it would build from the labels itself.
    served = FeatureReference.from_profile("prediction", profile)
    direct = reference_of("prediction", labels)
    assert served is not None and direct is not None
    for name in ("name", "numeric", "rows", "missing", "categories", "mean", "std"):
        assert getattr(served, name) == getattr(direct, name), name
    assert np.array_equal(served.counts, direct.counts)
    assert (served.edges is None) == (direct.edges is None)
    if served.edges is not None:
        assert np.array_equal(served.edges, direct.edges)


def test_a_package_without_holdout_rows_is_a_clear_failure(tmp_path, penguins_package) -> None:
    folder = tmp_path / "no-holdout"
    shutil.copytree(penguins_package.path, folder)
    (folder / "holdout.parquet").unlink()
    message = r"hold-out predictions failed: ModelError: .*holdout\.parquet"
    with pytest.raises(RuntimeError, match=message):
        holdout_predictions_aside(folder)
