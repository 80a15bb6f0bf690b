import fractions
import hashlib
import io
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipml.config import ProjectConfig
from shipml.errors import PipelineError, UnsafeModelError
from shipml.pipeline.cache import ArtifactCache, StoredOutput, cache_key, project_cache


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


@pytest.mark.parametrize(
    "value",
    [
        np.float64(0.25),
        np.str_("Adelie"),
        [np.float64(1.0), 2],
        {"accuracy": np.float64(0.9)},
        {1: "a"},  # json would give the key back as "1"
    ],
    ids=["float64", "str_", "list-of-float64", "dict-of-float64", "int-key"],
)
def test_a_cached_value_comes_back_with_its_own_type(tmp_path, value):
    """NumPy's float64 and str_ are a float and a str to isinstance, and json wrote them:
    a cached run handed the next step a Python float where the first run had handed a
    float64 (``.item()`` and ``.dtype`` then failed)."""
    cache = ArtifactCache(tmp_path)
    back = cache.load(cache.store("step", "out", value))
    assert back == value and type(back) is type(value)
    inner = {list: lambda v: v[0], dict: lambda v: next(iter(v.values()))}.get(type(value))
    if inner is not None:
        assert type(inner(back)) is type(inner(value))


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


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("value", "forged"),
    [
        (pd.DataFrame({"x": [1, 2]}), lambda p: pd.DataFrame({"x": [1, 3]}).to_parquet(p)),
        (pd.Series([1.0, 2.0]), lambda p: pd.DataFrame({"y": [9.0]}).to_parquet(p)),
        (np.arange(3), lambda p: p.write_bytes(npy_bytes(np.arange(4)))),
        ({"threshold": 0.5}, lambda p: p.write_text('{"threshold": 0.9}')),
        (LogisticRegression(), lambda p: p.write_bytes(p.read_bytes()[:-5])),
    ],
    ids=["frame", "series", "ndarray", "json", "skops"],
)
def test_a_changed_cached_output_is_a_miss_never_loaded(tmp_path, value, forged):
    cache = ArtifactCache(tmp_path)
    out = cache.store("s", "o", value)
    cache.save("k", "s", [out], {}, 0.0, None)
    path = tmp_path / "objects" / out.file
    forged(path)
    with pytest.raises(PipelineError, match="was modified"):
        cache.load(out)
    assert cache.lookup("k") is None and not path.exists()  # the step runs again
    again = cache.store("s", "o", value)  # and stores its output anew
    cache.save("k", "s", [again], {}, 0.0, None)
    assert cache.lookup("k") is not None
    assert type(cache.load(again)) is type(value)


def test_a_truncated_entry_or_missing_object_is_a_miss(tmp_path):
    cache = ArtifactCache(tmp_path)
    out = cache.store("s", "o", {"a": 1})
    cache.save("k", "s", [out], {}, 0.0, None)
    entry = tmp_path / "entries" / "k.json"
    entry.write_bytes(entry.read_bytes()[:20])
    assert cache.lookup("k") is None
    cache.save("k", "s", [out], {}, 0.0, None)
    (tmp_path / "objects" / out.file).unlink()
    assert cache.lookup("k") is None


def test_two_runs_storing_the_same_package_at_once_both_succeed(tmp_path, monkeypatch):
    import shutil

    from shipml.model import build_package

    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    package = build_package(model, X, path=tmp_path / "pkg")
    cache = ArtifactCache(tmp_path / "cache")
    copytree = shutil.copytree

    def meanwhile(src, dst, **kwargs):  # the other run renames its copy in first
        copytree(src, dst, **kwargs)
        copytree(src, cache.objects / f"package-{package.digest}")

    monkeypatch.setattr(shutil, "copytree", meanwhile)
    out = cache.store("train", "output", package)
    assert cache.intact(out)
    assert not [p for p in cache.objects.iterdir() if p.name.startswith(".tmp-")]
    monkeypatch.setattr(shutil, "copytree", copytree)
    (cache.objects / out.file / "signature.json").write_text("{}")  # changed after storing
    assert not cache.intact(out)
    assert cache.intact(cache.store("train", "output", package))  # replaced by a good copy


def test_a_series_is_stored_under_the_output_name_not_its_own(tmp_path):
    cache = ArtifactCache(tmp_path)
    named = cache.store("split", "y", pd.Series(["a", "b"], name="species"))
    unnamed = cache.store("split", "w", pd.Series([1.0, 2.0]))
    assert (named.name, unnamed.name) == ("y", "w")
    assert cache.load(named).name == "species" and cache.load(unnamed).name is None


def test_a_frame_that_cannot_be_stored_names_the_step_output_and_column(tmp_path):
    frame = pd.DataFrame({"x": [1, 2], "bad": pd.Series(["a", 1], dtype=object)})
    with pytest.raises(PipelineError, match=r"step 'ingest' returned a DataFrame as 'output'"):
        ArtifactCache(tmp_path).store("ingest", "output", frame)
    with pytest.raises(PipelineError, match="'bad'"):
        ArtifactCache(tmp_path).store("ingest", "output", frame)


def test_an_entry_whose_outputs_are_not_the_steps_is_a_miss(tmp_path):
    cache = ArtifactCache(tmp_path)
    out = cache.store("split", "species", pd.Series(["a"]))  # as a wrong entry named it
    cache.save("k", "split", [out], {}, 0.0, None)
    assert cache.lookup("k", ("y",)) is None
    assert cache.lookup("k", ("species",)) is not None


# -- which types a skops output may hold: never the ones its entry lists -----------------

EVIL = """
from pathlib import Path

RAN = Path({ran!r})


class {name}:
    def __init__(self):
        self.x = 1

    def __setstate__(self, state):  # what skops calls when it loads one
        RAN.write_text("constructed")
        self.__dict__.update(state)
"""

ESTIMATOR = """
class {name}:
    def fit(self, X):
        self.center_ = sum(X) / len(X)
        return self

    def transform(self, X):
        return [x - self.center_ for x in X]
"""


def _module(folder: Path, module: str, source: str, monkeypatch) -> Any:
    """A module in ``folder`` (put on sys.path), imported."""
    import importlib

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return importlib.import_module(module)


def _forge(cache: ArtifactCache, key: str, value: Any) -> StoredOutput:
    """What someone who can write the cache folder (or the bucket) can write: a skops
    object and an entry whose output lists every type in it as trusted."""
    import skops.io as sio

    data = sio.dumps(value)
    sha = hashlib.sha256(data).hexdigest()
    cache.objects.mkdir(parents=True, exist_ok=True)
    (cache.objects / f"skops-{sha}.skops").write_bytes(data)
    listed = sorted(sio.get_untrusted_types(data=data))
    out = StoredOutput("output", "skops", sha, f"skops-{sha}.skops", listed, sha)
    entry = {
        "key": key,
        "step": "train",
        "outputs": [asdict(out)],
        "metrics": {},
        "duration": 0.0,
        "created": "2026-01-01T00:00:00+00:00",
        "run_id": None,
    }
    cache.entries.mkdir(parents=True, exist_ok=True)
    (cache.entries / f"{key}.json").write_text(json.dumps(entry))
    return out


def test_an_entry_listing_a_type_outside_the_trusted_set_is_a_miss_never_loaded(
    tmp_path, monkeypatch, caplog
):
    """A type of a module outside the project, listed by the entry itself: refused."""
    ran = tmp_path / "ran.txt"
    evil = _module(
        tmp_path / "elsewhere", "elsewhere_mod", EVIL.format(ran=str(ran), name="Evil"), monkeypatch
    )
    root = tmp_path / "project"
    root.mkdir()
    cache = project_cache(ProjectConfig(root=root))
    out = _forge(cache, "k", evil.Evil())
    assert out.trusted_types == ["elsewhere_mod.Evil"]
    with caplog.at_level(logging.WARNING, logger="shipml.pipeline"):
        assert cache.lookup("k") is None  # a miss: the step runs again
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "shipml.pipeline"]
    assert "elsewhere_mod.Evil" in warning and "[model] trusted_types" in warning
    assert "\n" not in warning
    with pytest.raises(UnsafeModelError, match=r"not trusted: elsewhere_mod\.Evil") as refused:
        cache.load(out)
    assert "[model] trusted_types" in (refused.value.hint or "")
    assert not ran.exists()  # its __setstate__ never ran
    # The step runs again and its entry replaces the forged one.
    again = cache.store("train", "output", {"threshold": 0.5})
    cache.save("k", "train", [again], {}, 0.0, None)
    assert cache.lookup("k") is not None


def test_a_type_skops_does_not_trust_is_refused_unless_configured(tmp_path):
    value = fractions.Fraction(1, 3)
    plain = ArtifactCache(tmp_path / "plain")
    out = _forge(plain, "k", value)
    assert out.trusted_types == ["fractions.Fraction"]  # not one of skops' defaults
    assert plain.lookup("k") is None
    with pytest.raises(UnsafeModelError, match=r"fractions\.Fraction"):
        plain.load(out)
    # Listed in [model] trusted_types: it round-trips.
    config = ProjectConfig(root=tmp_path, model={"trusted_types": ["fractions.Fraction"]})
    cache = project_cache(config)
    stored = cache.store("train", "output", value)
    cache.save("k", "train", [stored], {}, 0.0, None)
    entry = cache.lookup("k")
    assert entry is not None
    assert cache.load(entry.output("output")) == value


def test_a_class_of_the_projects_own_code_round_trips(tmp_path, monkeypatch):
    """Code shipml runs anyway: a class defined in a module under the project root, also
    when that module is not imported yet when the entry is looked up."""
    root = tmp_path / "project"
    mod = _module(root, "my_estimators", ESTIMATOR.format(name="Centerer"), monkeypatch)
    cache = project_cache(ProjectConfig(root=root))
    stored = cache.store("train", "output", mod.Centerer().fit([1.0, 3.0]))
    assert stored.trusted_types == ["my_estimators.Centerer"]  # not trusted by skops
    cache.save("k", "train", [stored], {}, 0.0, None)
    monkeypatch.delitem(sys.modules, "my_estimators")
    entry = cache.lookup("k")
    assert entry is not None
    loaded = cache.load(entry.output("output"))
    assert type(loaded).__name__ == "Centerer" and loaded.transform([4.0]) == [2.0]
    # The same class with the project's root elsewhere: not the project's code.
    other = project_cache(
        ProjectConfig(root=tmp_path / "other", pipeline={"cache_dir": str(cache.dir)})
    )
    assert other.lookup("k") is None


def test_storing_an_output_the_cache_will_not_load_says_so_at_once(tmp_path, caplog):
    value = fractions.Fraction(1, 3)
    with caplog.at_level("WARNING", logger="shipml"):
        ArtifactCache(tmp_path / "plain").store("train", "output", value)
    (warning,) = [r.getMessage() for r in caplog.records if "will not load" in r.getMessage()]
    assert "step 'train': output 'output'" in warning and "fractions.Fraction" in warning
    assert "[model] trusted_types" in warning
    caplog.clear()
    config = ProjectConfig(root=tmp_path, model={"trusted_types": ["fractions.Fraction"]})
    with caplog.at_level("WARNING", logger="shipml"):
        project_cache(config).store("train", "output", value)
    assert not [r for r in caplog.records if "will not load" in r.getMessage()]


@pytest.mark.parametrize(
    "columns",
    [[0, 1], [0, "s"], [True, False], [1.5, "x"], [("a", "x"), ("a", "y")]],
    ids=["ints", "mixed", "bools", "float-str", "tuples"],
)
def test_column_labels_come_back_from_the_cache_as_the_step_returned_them(tmp_path, columns):
    # they came back as strings: a downstream step that read df[0] when the step ran
    # failed with KeyError: 0 on the next run, when the frame came from the cache
    index = pd.MultiIndex.from_tuples(columns) if isinstance(columns[0], tuple) else columns
    frame = pd.DataFrame([[1, 2]], columns=index)
    cache = ArtifactCache(tmp_path)
    back = cache.load(cache.store("s", "o", frame))
    assert list(back.columns) == list(frame.columns)
    assert [type(c) for c in back.columns] == [type(c) for c in frame.columns]
    assert list(frame.columns) == list(index)  # the caller's frame is not renamed
    series = cache.load(cache.store("s", "o", frame.iloc[:, 0]))
    assert series.name == frame.columns[0] and str(series.name) == str(frame.columns[0])


def test_labels_that_differ_only_in_type_have_different_digests(tmp_path):
    cache = ArtifactCache(tmp_path)
    ints = cache.store("s", "o", pd.DataFrame([[1, 2]], columns=[0, 1]))
    strings = cache.store("s", "o", pd.DataFrame([[1, 2]], columns=["0", "1"]))
    assert ints.digest != strings.digest


@pytest.mark.parametrize("columns", [["a", "a"], [1, "1"]])
def test_a_frame_with_a_column_name_twice_is_a_clear_error(tmp_path, columns):
    # an AttributeError ('DataFrame' object has no attribute 'dtype') failed the step
    frame = pd.DataFrame([[1, 2]], columns=columns)
    with pytest.raises(PipelineError, match=r"as 'o' .*more than one column is named '") as err:
        ArtifactCache(tmp_path).store("s", "o", frame)
    assert "a name of its own" in (err.value.hint or "")


def test_a_write_that_fails_leaves_no_partial_file_and_names_the_cache(tmp_path):
    # a full disk left a .tmp- file of all the space there was in objects/ (never removed,
    # so the disk stayed full) and failed the step with a bare OSError
    from tests.conftest import files_limited_to

    cache = ArtifactCache(tmp_path / "cache")
    with files_limited_to(64 * 1024), pytest.raises(PipelineError) as err:
        cache.store("s", "o", np.zeros(100_000))
    assert "cannot write 800,128 bytes to the step cache" in err.value.message
    assert str(tmp_path / "cache") in err.value.message
    assert "[pipeline] cache_dir" in (err.value.hint or "")
    assert list(cache.objects.iterdir()) == []
    assert cache.load(cache.store("s", "o", np.zeros(3))).tolist() == [0.0] * 3  # and after


@pytest.mark.parametrize(("kind", "file"), [("json", "victim.txt"), ("package", "victim")])
def test_an_entry_naming_a_file_outside_the_cache_is_a_miss_and_nothing_is_removed(
    tmp_path, kind, file
):
    # whoever can write the cache folder could name '../../victim': the entry was found
    # "changed" and the cache deleted that file, or that whole folder, outside the cache
    victim = tmp_path / file
    if kind == "package":
        victim.mkdir()
        (victim / "a").write_text("precious")
    else:
        victim.write_text("precious")
    cache = ArtifactCache(tmp_path / "cache")
    cache.objects.mkdir(parents=True)
    forged = StoredOutput("output", kind, "d", f"../../{file}", sha256="0" * 64)
    cache.save("k", "s", [forged], {}, 0.0, None)
    assert cache.lookup("k") is None
    assert victim.exists() and (victim.is_file() or (victim / "a").is_file())
    with pytest.raises(PipelineError, match="not a name the cache gives"):
        cache.load(forged)


def test_what_a_killed_write_left_is_swept_at_the_next_store(tmp_path):
    """`kill -9` between a temporary file and its rename left `.tmp-` files (and package
    copies) in the cache forever. The first store of a run removes those an hour old; a
    younger one may be another run's write in progress and stays."""
    import os
    import time

    cache = ArtifactCache(tmp_path)
    (tmp_path / "objects").mkdir()
    (tmp_path / "entries").mkdir()
    old_file = tmp_path / "objects" / ".tmp-abc"
    old_file.write_bytes(b"x" * 1000)
    old_copy = tmp_path / "objects" / ".tmp-package"
    (old_copy / "model").mkdir(parents=True)
    (old_copy / "model" / "model.onnx").write_bytes(b"onnx")
    old_entry = tmp_path / "entries" / ".tmp-entry"
    old_entry.write_text("{")
    hour_ago = time.time() - 3700
    for path in (old_file, old_copy, old_entry):
        os.utime(path, (hour_ago, hour_ago))
    young = tmp_path / "objects" / ".tmp-in-progress"
    young.write_bytes(b"y")
    kept = tmp_path / "objects" / "json-keep.json"
    kept.write_text("1")
    os.utime(kept, (hour_ago, hour_ago))
    outside = tmp_path / "outside"  # a planted link is removed, never what it points at
    (outside / "keep").mkdir(parents=True)
    link = tmp_path / "objects" / ".tmp-link"
    link.symlink_to(outside)
    os.utime(link, (hour_ago, hour_ago), follow_symlinks=False)
    out = cache.store("step", "n", 3)
    assert not old_file.exists() and not old_copy.exists() and not old_entry.exists()
    assert young.exists() and kept.exists()
    assert not link.is_symlink() and (outside / "keep").is_dir()
    assert cache.load(out) == 3
