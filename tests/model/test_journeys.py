"""`shipml init --model X` → run → test → promote → serve → a V2 request answers, for
LightGBM, XGBoost and CatBoost, classification and regression; the package is ONNX (no
pickle, no skops) with parity.

Classification is the penguins example (`shipml init NAME --model X`); regression is a
project made for the penguins table with the body mass as target (`shipml init NAME
--data penguins.csv --target body_mass_g --model X`), no file edited. Real MLflow store,
the real `shipml test` (pytest in its own process, the suites the gates need), real
gates. The CLI runs in this process (`shipml.cli.main`); the model is served once per
framework over a real socket (`shipml serve` in its own process, classification) and
once in process (the same server app, regression). The model is trained with the
defaults `shipml init` wrote: they must pass the project's own tests and gates."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipml.config import load_config
from shipml.model import ModelPackage
from shipml.project.serving import serve_spec
from shipml.serving.server import build_app
from tests.conftest import shipml_here, wait_until_ready
from tests.serving.conftest import free_port


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from palmerpenguins import load_penguins

    path = tmp_path_factory.mktemp("table") / "penguins.csv"
    load_penguins().to_csv(path, index=False)
    return path


def v2_request(package: ModelPackage) -> dict[str, Any]:
    """The first hold-out row as a V2 request, one tensor per feature."""
    X, _ = package.holdout()
    row = X.iloc[0]
    inputs = []
    for f in package.signature.features:
        value = row[f.name]
        if f.type == "string":
            inputs.append({"name": f.name, "shape": [1], "datatype": "BYTES", "data": [str(value)]})
        else:
            inputs.append(
                {"name": f.name, "shape": [1], "datatype": "FP32", "data": [float(value)]}
            )
    return {"inputs": inputs}


def serve_over_a_socket(project: Path, name: str, body: dict[str, Any]) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "shipml", "serve", f"{name}@champion", "--port", str(port)],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(port)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/{name}/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=30)


def serve_in_process(project: Path, name: str, body: dict[str, Any]) -> dict[str, Any]:
    app = build_app(serve_spec(load_config(project), f"{name}@champion"))
    with TestClient(app) as client:
        response = client.post(f"/v2/models/{name}/infer", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("framework", ["lightgbm", "xgboost", "catboost"])
def test_init_run_test_promote_serve(tmp_path, penguins_csv, framework, task):
    name = f"{framework}-{task[:3]}"
    init = ["init", name, "--model", framework, "--no-git"]
    if task == "regression":
        init += ["--data", str(penguins_csv), "--target", "body_mass_g"]
    made = shipml_here(*init, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / name
    assert f'MODEL = "{framework}"' in (project / "features.py").read_text()
    if task == "regression":
        assert "task: regression" in made.stdout
    space = load_config(project).tune.space  # the framework's search space, as data
    assert "n_estimators" in space and set(space) != {"n_estimators", "max_depth"}

    ran = shipml_here("run", "--alias", "challenger", cwd=project)  # the defaults init wrote
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert f"registered {name}/1 (challenger)" in ran.stdout
    tested = shipml_here("test", f"{name}@challenger", "--suite", "data,model", cwd=project)
    results = json.loads((project / "results" / "results.json").read_text())
    failed = [t["message"] for t in results["tests"] if t["outcome"] in ("failed", "error")]
    assert tested.returncode == 0 and not failed, (failed, tested.stdout[-3000:])
    assert results["summary"]["passed"] >= 10
    promoted = shipml_here("promote", f"{name}@challenger", cwd=project)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"{name}@champion → version 1" in promoted.stdout

    package = ModelPackage.load(next((project / ".shipml").rglob("package.json")).parent)
    files = set(package.manifest["files"])
    assert package.format == "onnx" and "model.onnx" in files
    assert not {f for f in files if f.endswith((".skops", ".pkl", ".joblib"))}
    assert package.manifest["final_estimator"].startswith((framework, "shipml.model.labels"))
    assert package.manifest["parity"]["label_agreement"] == 1.0
    assert package.manifest["parity"]["max_probability_diff"] <= 1e-4
    assert package.signature.task == task

    body = v2_request(package)
    serve = serve_over_a_socket if task == "classification" else serve_in_process
    answer = serve(project, name, body)
    label = next(o for o in answer["outputs"] if o["name"] == "label")
    X, _ = package.holdout()
    expected, _ = package.predict(X.head(1))
    if task == "classification":
        assert label["data"] == [str(expected[0])]
        assert label["data"][0] in ("Adelie", "Chinstrap", "Gentoo")
    else:
        assert label["datatype"] == "FP32"
        assert label["data"][0] == pytest.approx(float(expected[0]), rel=1e-6)
