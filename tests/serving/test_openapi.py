"""The OpenAPI document (/openapi.json) and the /docs page: generated from the signature,
valid OpenAPI 3.0, and true to the server: schemathesis sends every operation generated
requests (valid and invalid by the document) and checks every answer against it."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import GenerationMode, checks

from shipml.serving import openapi
from shipml.serving.app import ModelServer
from shipml.serving.predictor import Predictor

CHECKS = [
    checks.not_a_server_error,  # zero 5xx
    checks.status_code_conformance,  # every status is documented
    checks.content_type_conformance,
    checks.response_schema_conformance,  # every answer matches its schema
    checks.negative_data_rejection,  # what the document refuses, the server refuses
]


@pytest.fixture(scope="module")
def penguins_app(penguins_package) -> ModelServer:
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins"))
    app.warm_up()
    return app


def test_the_document_is_valid_openapi_with_the_models_features(penguins_app, penguins_package):
    document = openapi.document(
        penguins_package.signature, name="penguins", version="1", profile=None
    )
    validate(document)
    row = document["components"]["schemas"]["Row"]
    features = penguins_package.signature.features
    assert row.get("required", []) == [f.name for f in features if not f.nullable]
    assert list(row["properties"]) == [f.name for f in features]
    island = row["properties"]["island"]
    assert set(island["x-shipml-categories"]) == {"Biscoe", "Dream", "Torgersen"}
    assert island["x-shipml-unseen"] == "accept" and "enum" not in island  # accepted: no enum
    assert row["properties"]["bill_length_mm"]["type"] == "number"
    assert row["properties"]["bill_length_mm"]["nullable"] is True


def test_an_all_numeric_model_documents_its_matrix_tensor(cancer_package):
    signature = cancer_package.signature
    document = openapi.document(signature, name="cancer", version="3")
    validate(document)
    tensors = document["components"]["schemas"]["V2InferenceRequest"]["properties"]["inputs"]
    matrix = tensors["items"]["anyOf"][-1]
    assert "columns in this order: mean radius, mean texture" in matrix["description"]
    assert len(tensors["items"]["anyOf"]) == len(signature.features) + 1
    params = document["paths"]["/v2/models/{model_name}/versions/{model_version}/infer"]["post"]
    assert params["parameters"][1]["schema"]["enum"] == ["3"]


def test_unseen_categories_refused_are_an_enum(penguins_strict_package):
    signature = penguins_strict_package.signature
    document = openapi.document(signature, name="p", version="1")
    island = document["components"]["schemas"]["Row"]["properties"]["island"]
    feature = next(f for f in signature.features if f.name == "island")
    nulls = [None] if feature.nullable else []
    assert island["enum"] == ["Biscoe", "Dream", "Torgersen", *nulls]


def _run(operation, strategy, examples: int) -> int:
    sent = 0

    @given(strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def one(case) -> None:
        nonlocal sent
        case.call_and_validate(checks=CHECKS)
        sent += 1

    try:
        one()
    except Unsatisfiable:  # nothing to make invalid (an operation without inputs)
        assert sent == 0
    return sent


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_schemathesis_finds_no_5xx_and_no_answer_off_the_document(penguins_app):
    """Every operation: its documented examples (answered 200), then requests generated
    valid by the document and invalid by it. A failing check raises with the request."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", penguins_app)
    sent, tested = 0, set()
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.add(operation.label)
        for strategy in operation.get_strategies_from_examples():
            case = strategy.example()
            # optional, and for binary bodies only: an example is plain JSON
            (case.headers or {}).pop("Inference-Header-Content-Length", None)
            assert case.call_and_validate(checks=CHECKS).status_code == 200, case
        sent += _run(operation, operation.as_strategy(GenerationMode.POSITIVE), 15)
        sent += _run(operation, operation.as_strategy(GenerationMode.NEGATIVE), 15)
    documented = {
        f"{method.upper()} {path}"
        for path, item in schema.raw_schema["paths"].items()
        for method in item
    }
    assert tested == documented - {"GET /openapi.json"}  # schemathesis skips its source
    assert sent > 150
