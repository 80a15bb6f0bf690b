from __future__ import annotations

import pytest

from shipml.model import build_package
from shipml.serving import ModelServer, Predictor
from tests.serving.conftest import penguins_data, penguins_model, penguins_package  # noqa: F401


@pytest.fixture(scope="package")
def worse_package(tmp_path_factory, penguins_data):  # noqa: F811
    """A challenger trained on shuffled labels."""
    X, y = penguins_data
    shuffled = y.sample(frac=1.0, random_state=3).to_numpy()
    model = penguins_model(X, shuffled)
    return build_package(model, X, y, path=tmp_path_factory.mktemp("pkg") / "penguins")


def server(package) -> ModelServer:
    """A model server to host inside a gateway (no socket)."""
    app = ModelServer(Predictor.load(package.path, name="penguins"))
    app.warm_up()
    return app


def instances(penguins_data, n=None):  # noqa: F811
    """(instance, label) pairs of the penguins data."""
    X, y = penguins_data
    out = []
    for i in range(len(X) if n is None else n):
        inst = {
            k: (None if v != v else (v.item() if hasattr(v, "item") else v))
            for k, v in X.iloc[i].items()
        }
        out.append((inst, y.iloc[i]))
    return out
