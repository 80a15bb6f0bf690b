"""`shipml init --model X` → run → test → promote → serve → a V2 request, for XGBoost,
LightGBM and CatBoost, classification and regression: real MLflow store, real pytest
suites, a real server over a socket; the package is ONNX with parity.

The template is a classification (penguin species); the regression journeys turn the
same project into one predicting body mass (a project made from the user's own data is
`shipml init --data`, issue 15)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from shipml.model import ModelPackage
from shipml.templates import create_project
from tests.conftest import shipml, wait_until_ready
from tests.serving.conftest import free_port

# Regression: predict body mass from the other measurements and the species.
REGRESSION_PIPELINE = [
    ('TARGET = "species"', 'TARGET = "body_mass_g"'),
    ('"body_mass_g", "sex"]', '"species", "sex"]'),
    ("random_state=seed, stratify=df[TARGET]", "random_state=seed"),
    (
        "build_search(X, n_estimators=n_estimators, seed=seed)",
        "build_search(X, n_estimators=n_estimators, seed=seed, task='regression')",
    ),
    ('{"cv_accuracy": search.best_score_}', '{"cv_r2": search.best_score_}'),
    (
        "from sklearn.metrics import accuracy_score, f1_score, roc_auc_score",
        "from sklearn.metrics import mean_absolute_error, r2_score",
    ),
    ('"accuracy": accuracy_score(y, predicted),', '"mae": mean_absolute_error(y, predicted),'),
    ('"f1_macro": f1_score(y, predicted, average="macro"),', '"r2": r2_score(y, predicted),'),
    ('"roc_auc_ovr": roc_auc_score(y, model.predict_proba(X), multi_class="ovr"),', ""),
]
REGRESSION_TESTS = """
[tests.model]
min = { r2 = 0.7 }
slices = ["island"]
max_slice_gap = 0.5
invariance = [{ feature = "bill_depth_mm", shift = 0.001, min_agreement = 0.9 }]
directional = [
    { feature = "flipper_length_mm", shift = 20.0, direction = "increase", min_fraction = 0.6 },
]
min_feature_importance = -1.0
# body mass is nearly linear in the other measurements: trees trail a ridge by ~20 g RMSE
simpler_tolerance = 40.0
latency_budget_ms = 5.0

[tests.api]
requests = 100
concurrency = 4
max_p95_ms = 100

[gates]
suites = ["data", "model"]

[gates.min]
"model.r2" = 0.7
"""


def _as_regression(project: Path) -> None:
    pipeline = project / "pipeline.py"
    source = pipeline.read_text()
    for old, new in REGRESSION_PIPELINE:
        assert old in source, old
        source = source.replace(old, new)
    pipeline.write_text(source)
    (project / "tests" / "test_model.py").unlink()  # textbook penguins of each species
    config = project / "shipml.toml"
    text = config.read_text()
    head, _, rest = text.partition("[tests.model]")
    _, _, tail = rest.partition("[rollout]")
    head = head.replace('target = "species"', 'target = "body_mass_g"')
    head = head.replace(", body_mass_g = [2500, 6500]", "")
    config.write_text(head + REGRESSION_TESTS.lstrip() + "\n[rollout]" + tail)


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("framework", ["lightgbm", "xgboost", "catboost"])
def test_init_run_test_promote_serve(tmp_path, framework, task):
    name = f"{framework}-{task[:3]}"
    project = create_project(tmp_path / name, name, model=framework)
    assert f'MODEL = "{framework}"' in (project / "features.py").read_text()
    if task == "regression":
        _as_regression(project)
    ran = shipml("run", "--alias", "challenger", "--param", "n_estimators=60", cwd=project)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"registered {name}/1 (challenger)" in ran.stdout

    tested = shipml("test", f"{name}@challenger", "--suite", "data,model", cwd=project)
    results = json.loads((project / "results" / "results.json").read_text())
    failed = [t["message"] for t in results["tests"] if t["outcome"] in ("failed", "error")]
    assert tested.returncode == 0 and not failed, (failed, tested.stdout[-3000:])
    assert results["summary"]["passed"] >= 15
    promoted = shipml("promote", f"{name}@challenger", cwd=project)
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

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "shipml", "serve", f"{name}@champion", "--port", str(port)],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(port)
        X, _ = package.holdout()
        row = X.iloc[0]
        inputs = [
            {"name": f.name, "shape": [1], "datatype": "BYTES", "data": [str(row[f.name])]}
            if f.type == "string"
            else {"name": f.name, "shape": [1], "datatype": "FP32", "data": [float(row[f.name])]}
            for f in package.signature.features
        ]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/{name}/infer",
            data=json.dumps({"inputs": inputs}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    label = next(o for o in answer["outputs"] if o["name"] == "label")
    expected, _ = package.predict(X.head(1))
    if task == "classification":
        assert label["data"] == [str(expected[0])]
        assert label["data"][0] in ("Adelie", "Chinstrap", "Gentoo")
    else:
        assert label["datatype"] == "FP32"
        assert label["data"][0] == pytest.approx(float(expected[0]), rel=1e-6)
