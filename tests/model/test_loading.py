"""A model package reads only its own files: ONNX external data and manifest entries that
point outside the package (``..``, an absolute path, a symlink, the audit signing key) are
refused before any tensor is read."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.external_data_helper import set_external_data
from sklearn.datasets import load_breast_cancer
from sklearn.neural_network import MLPClassifier

from shipml.errors import ModelError, UnsafeModelError
from shipml.files import sha256_file
from shipml.model import ModelPackage, build_package, model_input
from shipml.serving.predictor import Predictor


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> ModelPackage:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :5]
    # A small network: its weights are graph initializers (what external data replaces).
    model = MLPClassifier((8,), max_iter=200, random_state=0).fit(model_input(X), y)
    return build_package(model, X, y, path=tmp_path_factory.mktemp("pkg") / "cancer")


def tampered(package: ModelPackage, where: Path, location: str, payload: bytes | None) -> Path:
    """A copy of ``package`` whose largest initializer is read from ``location``
    (``payload`` written there first, if given), with a manifest that matches."""
    folder = where / "pkg"
    shutil.copytree(package.path, folder)
    proto = onnx.load_model(str(folder / "model.onnx"))
    tensor = largest(proto)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    size = len(tensor.raw_data)
    if payload is not None:
        target = folder / location if not os.path.isabs(location) else Path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload[:size].ljust(size, b"\0"))
    set_external_data(tensor, location=location, offset=0, length=size)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    onnx.save_model(proto, str(folder / "model.onnx"))
    rewrite_manifest(folder)
    return folder


def largest(proto: onnx.ModelProto) -> onnx.TensorProto:
    return max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)


def rewrite_manifest(folder: Path, extra: dict[str, str] | None = None) -> None:
    manifest = json.loads((folder / "package.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = sha256_file(folder / name)
    manifest["files"].update(extra or {})
    (folder / "package.json").write_text(json.dumps(manifest))


SECRET = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIsecretsecretsecretsecret\n"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "signing-key"])
def test_external_data_outside_the_package_is_refused(package, tmp_path, monkeypatch, kind):
    secret = tmp_path / "secret.key"
    secret.write_bytes(SECRET * 20)
    if kind == "dotdot":
        folder = tampered(package, tmp_path, "../secret.key", None)
    elif kind == "absolute":
        folder = tampered(package, tmp_path, str(secret), None)
    elif kind == "symlink":
        folder = tampered(package, tmp_path, "weights.bin", None)
        (folder / "weights.bin").symlink_to(secret)
        rewrite_manifest(folder, {"weights.bin": "0" * 64})
    else:  # the audit signing key of the project the server runs in (relative to its cwd)
        project = tmp_path / "project"
        (project / ".shipml/audit").mkdir(parents=True)
        (project / ".shipml/audit/signing.key").write_bytes(SECRET * 20)
        monkeypatch.chdir(project)
        folder = tampered(package, tmp_path, ".shipml/audit/signing.key", None)
    with pytest.raises(UnsafeModelError) as err:
        Predictor.load(folder, name="cancer")
    text = str(err.value)
    assert "inside the package" in text or "symbolic link" in text or "manifest" in text
    assert "PRIVATE KEY" not in text and "MC4CAQ" not in text  # no content in the message


def test_external_data_inside_the_package_loads_and_predicts_the_same(package, tmp_path):
    weights = numpy_helper.to_array(largest(onnx.load_model(str(package.model_file))))
    folder = tampered(package, tmp_path, "weights.bin", weights.tobytes())
    rewrite_manifest(folder, {"weights.bin": sha256_file(folder / "weights.bin")})
    X, _ = package.holdout()
    expected = Predictor.load(package.path, name="a")
    served = Predictor.load(folder, name="b")
    rows = served.warm_up_rows()
    np.testing.assert_allclose(
        served.run(served.feeds(rows)).probabilities,
        expected.run(expected.feeds(rows)).probabilities,
    )
    assert len(ModelPackage.load(folder).predict(X)[0]) == len(X)


def test_external_data_not_in_the_manifest_is_refused(package, tmp_path):
    weights = numpy_helper.to_array(largest(onnx.load_model(str(package.model_file))))
    folder = tampered(package, tmp_path, "weights.bin", weights.tobytes())  # not listed
    with pytest.raises(UnsafeModelError, match="manifest"):
        Predictor.load(folder, name="cancer")


@pytest.mark.parametrize("name", ["../outside.json", "/etc/hostname", "a/../../b", ""])
def test_a_manifest_naming_files_outside_is_refused(package, tmp_path, name):
    folder = tmp_path / "pkg"
    shutil.copytree(package.path, folder)
    rewrite_manifest(folder, {name: "0" * 64})
    with pytest.raises(UnsafeModelError, match="not a plain path"):
        ModelPackage.load(folder)


def test_a_symlinked_package_file_is_refused(package, tmp_path):
    folder = tmp_path / "pkg"
    shutil.copytree(package.path, folder)
    (tmp_path / "real.json").write_bytes((folder / "lineage.json").read_bytes())
    (folder / "lineage.json").unlink()
    (folder / "lineage.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(UnsafeModelError, match="symbolic link"):
        ModelPackage.load(folder)


@pytest.mark.parametrize("content", [b"not onnx at all", b"\x08\x07" + b"\xff" * 100, b""])
def test_a_model_file_that_is_not_onnx_is_a_model_error(package, tmp_path, content):
    folder = tmp_path / "pkg"
    shutil.copytree(package.path, folder)
    (folder / "model.onnx").write_bytes(content)
    rewrite_manifest(folder)
    with pytest.raises(ModelError) as err:
        Predictor.load(folder, name="cancer")
    assert "model.onnx" in err.value.message


def test_a_garbage_manifest_is_a_model_error(package, tmp_path):
    folder = tmp_path / "pkg"
    shutil.copytree(package.path, folder)
    for text in ["{", '{"files": [1]}', '{"files": {"model.onnx": 3}}', "[]"]:
        (folder / "package.json").write_text(text)
        with pytest.raises(ModelError, match="not a valid package manifest"):
            ModelPackage.load(folder)


@pytest.mark.parametrize("dropped", ["model.onnx", "signature.json", "lineage.json"])
def test_a_manifest_that_leaves_a_core_file_unlisted_is_refused(package, tmp_path, dropped):
    """An unlisted file is never sha256-checked: a package may not leave out what it runs."""
    folder = tmp_path / "pkg"
    shutil.copytree(package.path, folder)
    manifest = json.loads((folder / "package.json").read_text())
    del manifest["files"][dropped]
    (folder / "package.json").write_text(json.dumps(manifest))
    (folder / dropped).write_bytes(b"tampered, and not checked")  # what a tamperer would do
    with pytest.raises(ModelError, match=f"lists no sha256 for {re.escape(dropped)}"):
        Predictor.load(folder, name="cancer")


@pytest.mark.parametrize("fmt", [None, "pickle", "weird", 3])
def test_a_manifest_with_an_unknown_format_is_a_model_error(package, tmp_path, fmt):
    folder = tmp_path / "pkg"
    shutil.copytree(package.path, folder)
    manifest = json.loads((folder / "package.json").read_text())
    manifest["format"] = fmt
    (folder / "package.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="is not onnx or skops"):
        Predictor.load(folder, name="cancer")


def test_an_unlisted_holdout_is_not_read(package, tmp_path):
    folder = tmp_path / "pkg"
    shutil.copytree(package.path, folder)
    manifest = json.loads((folder / "package.json").read_text())
    del manifest["files"]["holdout.parquet"]
    (folder / "package.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"no holdout\.parquet"):
        ModelPackage.load(folder).holdout()


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("package.json", NESTED),
        ("signature.json", NESTED),
        ("lineage.json", NESTED),
        ("profile.json", b"\xff\xfe not utf-8"),
        ("signature.json", b'{"features": 3}'),
        ("lineage.json", b"[1, 2, 3]"),
    ],
)
def test_a_package_json_file_that_is_not_what_it_should_be_is_a_model_error(
    package, tmp_path, name, content
):
    """Even sealed (its sha256 in the manifest): a hostile package is an error, no traceback."""
    folder = tmp_path / "pkg"
    shutil.copytree(package.path, folder)
    (folder / name).write_bytes(content)
    if name != "package.json":
        rewrite_manifest(folder)
    with pytest.raises(ModelError, match="not a valid"):
        loaded = ModelPackage.load(folder)
        assert loaded.signature and loaded.lineage is not None and loaded.profile is not None
