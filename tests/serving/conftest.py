"""Model packages to serve: penguins (strings, missing values) and breast cancer (numeric)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipml.model import ModelPackage, build_package, model_input


@pytest.fixture(scope="session")
def penguins_data() -> tuple[pd.DataFrame, pd.Series]:
    df = load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    return df.drop(columns=["species"]), df["species"]


def penguins_model(X: pd.DataFrame, y) -> Pipeline:
    """Imputation, one-hot encoding and a 30-tree forest, fitted on ``X`` and ``y``."""
    cat, num = ["island", "sex"], [c for c in X.columns if c not in ("island", "sex")]
    pre = ColumnTransformer(
        [
            (
                "cat",
                make_pipeline(
                    SimpleImputer(missing_values="", strategy="constant", fill_value="?"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                cat,
            ),
            ("num", SimpleImputer(strategy="median"), num),
        ],
        sparse_threshold=0,
    )
    model = Pipeline([("pre", pre), ("rf", RandomForestClassifier(30, random_state=0))])
    return model.fit(model_input(X), y)


@pytest.fixture(scope="session")
def penguins_package(tmp_path_factory, penguins_data) -> ModelPackage:
    X, y = penguins_data
    model = penguins_model(X, y)
    return build_package(model, X, y, path=tmp_path_factory.mktemp("pkg") / "penguins")


@pytest.fixture(scope="session")
def penguins_strict_package(tmp_path_factory, penguins_data) -> ModelPackage:
    """The penguins model whose string features refuse categories they never saw."""
    X, y = penguins_data
    model = penguins_model(X, y)
    path = tmp_path_factory.mktemp("pkg") / "penguins-strict"
    return build_package(model, X, y, path=path, unseen={"island": "error", "sex": "error"})


@pytest.fixture(scope="session")
def cancer_data() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def cancer_package(tmp_path_factory, cancer_data) -> ModelPackage:
    X, y = cancer_data
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(model_input(X), y)
    return build_package(model, X, y, path=tmp_path_factory.mktemp("pkg") / "cancer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(package: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """`shipml serve` in a subprocess on a free port; returns when it is ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipml", "serve", str(package), "--port", str(port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server died")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not become ready")


@pytest.fixture(scope="module")
def penguins_server(penguins_package) -> Iterator[str]:
    proc, url = start_server(penguins_package.path)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cancer_server(cancer_package) -> Iterator[str]:
    proc, url = start_server(cancer_package.path)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def servers(penguins_package) -> Iterator[tuple[str, str]]:
    """`shipml serve penguins --grpc-port P`: (HTTP URL, gRPC address), one per test
    module that asks (tests/serving/test_grpc.py, test_interop.py)."""
    grpc_port = free_port()
    proc, url = start_server(penguins_package.path, "--grpc-port", str(grpc_port))
    yield url, f"127.0.0.1:{grpc_port}"
    proc.terminate()
    proc.wait(timeout=30)
