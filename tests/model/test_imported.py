"""Bring your own ONNX: an MLP built here with onnx.helper (as torch.onnx.export would
write it: one float input, logits out), imported, tested and served; signatures that do
not match the graph and hostile files are refused with clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from palmerpenguins import load_penguins
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from shipml.errors import ModelError, UnsafeModelError
from shipml.model.imported import import_onnx
from shipml.templates import create_project
from tests.conftest import shipml_here, wait_until_ready
from tests.serving.conftest import free_port

FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def mlp_graph(mlp: MLPClassifier, mean: np.ndarray, std: np.ndarray, *, image: bool) -> bytes:
    """x → standardise → dense → relu → dense → logits, with the weights of ``mlp``."""
    x = "image" if image else "x"
    shape = [None, 1, 8, 8] if image else [None, len(mean)]
    consts = {
        "mean": mean,
        "std": std,
        "w1": mlp.coefs_[0],
        "b1": mlp.intercepts_[0],
        "w2": mlp.coefs_[1],
        "b2": mlp.intercepts_[1],
    }
    nodes = [helper.make_node("Flatten", [x], ["flat"], axis=1)] if image else []
    first = "flat" if image else x
    nodes += [
        helper.make_node("Sub", [first, "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, len(mlp.classes_)])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def penguin_mlp(tmp_path_factory) -> tuple[Path, Path, Path, pd.DataFrame]:
    """model.onnx, signature.json and rows.parquet of a penguin MLP (4 numbers in)."""
    folder = tmp_path_factory.mktemp("mlp")
    df = load_penguins().dropna(subset=[*FEATURES, "species"])
    train, valid = train_test_split(df, test_size=0.3, random_state=0, stratify=df["species"])
    X = train[FEATURES].to_numpy(np.float32)
    mean, std = X.mean(axis=0), X.std(axis=0)
    mlp = MLPClassifier((16,), max_iter=2000, random_state=0).fit((X - mean) / std, train.species)
    (folder / "model.onnx").write_bytes(mlp_graph(mlp, mean, std, image=False))
    signature = {
        "features": [{"name": f, "type": "float"} for f in FEATURES],
        "task": "classification",
        "classes": CLASSES,
        "outputs": {"logits": "logits"},
    }
    (folder / "signature.json").write_text(json.dumps(signature))
    valid[[*FEATURES, "species"]].to_parquet(folder / "rows.parquet")
    return folder / "model.onnx", folder / "signature.json", folder / "rows.parquet", valid


def test_an_imported_mlp_is_scored_and_predicts_like_its_weights(penguin_mlp, tmp_path):
    model, signature, rows, valid = penguin_mlp
    pkg = import_onnx(
        model, signature, pd.read_parquet(rows), labels="species", path=tmp_path / "pkg"
    )
    assert pkg.format == "onnx" and pkg.signature.onnx_input == "matrix"
    assert pkg.manifest["validation"]["rows"] == len(valid)
    assert pkg.manifest["validation"]["accuracy"] > 0.9
    assert pkg.manifest["imported"]["outputs"] == {"logits": "logits"}
    labels, proba = pkg.predict(valid[FEATURES])
    assert set(labels) <= set(CLASSES) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    X, y = pkg.holdout()
    assert list(X.columns) == FEATURES and (y == valid["species"].to_numpy()).all()
    assert not any(f.nullable for f in pkg.signature.features)  # NaN reaches the weights


def test_import_test_promote_and_serve_in_a_project(penguin_mlp, tmp_path):
    model, signature, rows, valid = penguin_mlp
    project = create_project(tmp_path / "mlp", "mlp", git=False)
    for penguin_test in ("test_api.py", "test_model.py"):  # about species from 6 features
        (project / "tests" / penguin_test).unlink()
    config = project / "shipml.toml"
    text = config.read_text()
    head, _, rest = text.partition("[tests.model]")
    _, _, tail = rest.partition("[gates]")
    config.write_text(
        head
        + '[tests.model]\nmin = { accuracy = 0.9 }\nslices = ["bill_length_mm"]\n'
        + "max_slice_gap = 0.2\nsimpler = false\nmin_feature_importance = -1.0\n\n"
        + "[tests.api]\nrequests = 100\nconcurrency = 4\nmax_p95_ms = 100\n\n"
        + "[gates]"
        + tail
    )
    command = ["models", "import", str(model), "--signature", str(signature)]
    command += ["--validation", str(rows), "--labels", "species", "--alias", "challenger"]
    imported = shipml_here(*command, cwd=project)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "model: registered mlp/1 (challenger)" in imported.stdout
    tested = shipml_here("test", "mlp@challenger", "--suite", "model,api", cwd=project)
    results = json.loads((project / "results" / "results.json").read_text())
    failed = [t["message"] for t in results["tests"] if t["outcome"] in ("failed", "error")]
    assert tested.returncode == 0 and not failed, (failed, tested.stdout[-2000:])
    assert results["suites"]["api"]["passed"] >= 3
    again = shipml_here(*command, cwd=project)
    assert "unchanged, still mlp/1" in again.stdout  # same graph, same version
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "shipml", "serve", "mlp@challenger", "--port", str(port)],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(port)
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "data": valid[FEATURES].head(2).to_numpy().ravel().tolist(),
                }
            ]
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/mlp/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    label = next(o for o in answer["outputs"] if o["name"] == "label")
    assert label["data"] == list(valid["species"].head(2))
    events = (project / ".shipml").rglob("*")
    assert any(p.is_file() for p in events)


def _write(folder: Path, name: str, data: object) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": [{"name": f, "type": "float"} for f in FEATURES[:3]]}, "graph's inputs"),
        ({"features": [{"name": "x", "type": "string"}]}, "does not fit graph input"),
        ({"outputs": {"logits": "nope"}}, "outputs the graph does not have"),
        ({"outputs": {"probabilities": "logits"}}, "do not sum to 1"),
        ({"outputs": {"shape": "logits"}}, "must map roles"),
        ({"task": "ranking"}, "unknown task"),
        ({"classes": ["one"]}, "lists its classes"),
        ({"features": [{"name": "x", "type": "tensor", "shape": [0]}]}, "positive ints"),
        ({"features": "x"}, "no 'features' list"),
    ],
)
def test_a_signature_that_does_not_match_the_graph_is_refused(
    penguin_mlp, tmp_path, change, message
):
    model, signature, rows, _ = penguin_mlp
    bad = _write(tmp_path, "signature.json", {**json.loads(signature.read_text()), **change})
    with pytest.raises(ModelError, match=message) as err:
        import_onnx(model, bad, pd.read_parquet(rows), labels="species", path=tmp_path / "p")
    assert err.value.exit_code == 8
    assert not (tmp_path / "p").exists()


def test_hostile_files_are_refused(penguin_mlp, tmp_path):
    model, signature, rows, _ = penguin_mlp
    frame = pd.read_parquet(rows)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07" + bytes(range(256)) * 40)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        import_onnx(garbage, signature, frame, path=tmp_path / "p")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model.read_bytes()[:200])
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        import_onnx(truncated, signature, frame, path=tmp_path / "p")
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeModelError):
        import_onnx(pickled, signature, frame, path=tmp_path / "p")
    (tmp_path / "sig.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read the signature"):
        import_onnx(model, tmp_path / "sig.json", frame, path=tmp_path / "p")
    with pytest.raises(ModelError, match="lack the columns"):
        import_onnx(model, signature, frame.drop(columns=["body_mass_g"]), path=tmp_path / "p")
    with pytest.raises(ModelError, match="lack the columns nope"):
        import_onnx(model, signature, frame, labels="nope", path=tmp_path / "p")
    nan = frame.assign(body_mass_g=np.inf)
    with pytest.raises(ModelError):
        import_onnx(model, signature, nan, labels="species", path=tmp_path / "p")
    assert not (tmp_path / "p").exists()
