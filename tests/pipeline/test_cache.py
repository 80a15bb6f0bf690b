import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipml.errors import PipelineError
from shipml.pipeline.cache import ArtifactCache, cache_key


def test_outputs_round_trip_by_type(tmp_path):
    cache = ArtifactCache(tmp_path)
    frame = pd.DataFrame({0: [1.0, None], "s": ["a", None]}, index=[5, 9])
    values = {
        "frame": frame,
        "series": pd.Series([1, 2, 3]),
        "named": pd.Series([1.5], name="y"),
        "array": np.arange(6).reshape(2, 3),
        "json": {"a": [1, 2], "b": None},
        "model": LogisticRegression().fit([[0.0], [1.0]], [0, 1]),
    }
    stored = {k: cache.store("step", k, v) for k, v in values.items()}
    assert [stored[k].kind for k in values] == [
        "frame",
        "series",
        "series",
        "ndarray",
        "json",
        "skops",
    ]
    assert list(frame.columns) == [0, "s"]  # the caller's frame is not renamed
    loaded = {k: cache.load(o) for k, o in stored.items()}
    assert loaded["frame"].index.tolist() == [5, 9]
    assert loaded["series"].name is None and loaded["named"].name == "y"
    assert (loaded["array"] == values["array"]).all()
    assert loaded["json"] == values["json"]
    assert loaded["model"].predict([[1.0]])[0] == 1
    assert stored["model"].trusted_types == []  # sklearn types skops trusts by default


def test_equal_content_has_equal_digest_and_index_matters(tmp_path):
    cache = ArtifactCache(tmp_path)
    a = cache.store("s", "o", pd.DataFrame({"x": [1, 2]}))
    b = cache.store("s", "o", pd.DataFrame({"x": [1, 2]}))
    c = cache.store("s", "o", pd.DataFrame({"x": [1, 2]}, index=[1, 0]))
    assert a.digest == b.digest != c.digest


def test_a_modified_skops_object_is_refused(tmp_path):
    cache = ArtifactCache(tmp_path)
    out = cache.store("s", "m", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    path = tmp_path / "objects" / out.file
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(PipelineError, match="was modified"):
        cache.load(out)


def test_unstorable_outputs_name_the_step(tmp_path):
    with pytest.raises(PipelineError, match="step 'train' returned generator"):
        ArtifactCache(tmp_path).store("train", "output", (i for i in range(3)))


def test_cache_key_covers_code_params_inputs_and_settings():
    base = cache_key("s", "code", {"p": 1}, {"x": "d1"}, {"parity_tolerance": 1e-4})
    assert base != cache_key("s", "code2", {"p": 1}, {"x": "d1"}, {"parity_tolerance": 1e-4})
    assert base != cache_key("s", "code", {"p": 2}, {"x": "d1"}, {"parity_tolerance": 1e-4})
    assert base != cache_key("s", "code", {"p": 1}, {"x": "d2"}, {"parity_tolerance": 1e-4})
    assert base != cache_key("s", "code", {"p": 1}, {"x": "d1"}, {"parity_tolerance": 1e-3})
