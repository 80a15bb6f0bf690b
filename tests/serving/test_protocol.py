import math

import numpy as np
import pytest

from shipml.errors import InvalidRequest
from shipml.model.signature import Feature, Signature
from shipml.serving import protocol
from shipml.serving.validation import Validator

NUMERIC = Validator(Signature([Feature("a", "float", False), Feature("b", "float", True)]))


def matrix_body(shape, data, datatype="FP32", name="input"):
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


def answer(body, general: bool, monkeypatch):
    """parse_v2's rows (as a list, NaN as None) or refusal; ``general``: no short path."""
    with monkeypatch.context() as patch:
        if general:
            patch.setattr(protocol, "_plain_matrix", lambda inputs, validator: None)
        try:
            rows = protocol.parse_v2(body, NUMERIC)[0]
        except InvalidRequest as exc:
            return "refused", exc.message
    assert rows.matrix is not None and rows.matrix.dtype == np.float32
    values = [[None if math.isnan(v) else v for v in row] for row in rows.matrix.tolist()]
    return rows.n, values


@pytest.mark.parametrize(
    "body",
    [
        matrix_body([1, 2], [1.5, 2]),
        matrix_body([2, 2], [1, 2, 3, 4], "INT64"),
        matrix_body([1, 2], [3.4028235e38, -3.4028235e38]),  # float32's max: kept
        matrix_body([1, 2], [3.4028236e38, 1.0]),  # just past it: refused
        matrix_body([1, 2], [1e39, 1.0]),
        matrix_body([1, 2], [10**400, 1.0]),
        matrix_body([1, 2], [float("inf"), 1.0]),
        matrix_body([1, 2], [1.0, float("nan")]),  # a missing value: allowed in b
        matrix_body([1, 2], [float("nan"), 1.0]),  # not in a
        matrix_body([2, 2], [1.0, 2.0, float("nan"), 3.0]),  # nor after the first value
        matrix_body([1, 2], [None, 1.0]),
        matrix_body([1, 2], [1.0, None]),
        matrix_body([1, 2], [True, 1.0]),
        matrix_body([1, 2], ["1", 1.0]),
        matrix_body([1, 2], [[1.0, 2.0]]),  # nested data
        matrix_body([1, 3], [1.0, 2.0, 3.0]),  # wrong width
        matrix_body([0, 2], []),
        matrix_body([1, 2], [1.0]),  # shape and data disagree
        matrix_body([1, True], [1.0, 2.0]),
        matrix_body([1, 2], [1.0, 2.0], "BYTES"),
        matrix_body([1, 2], [1.0, 2.0], name="a"),  # a feature's name: not a matrix
        matrix_body([2], [1.0, 2.0]),  # one row, 1-D
        {"inputs": [matrix_body([1, 2], [1, 2])["inputs"][0]] * 2},  # the tensor twice
    ],
)
def test_the_short_matrix_path_answers_as_the_general_path(body, monkeypatch):
    assert answer(body, False, monkeypatch) == answer(body, True, monkeypatch)


def test_a_plain_matrix_takes_the_short_path():
    rows = protocol._plain_matrix(matrix_body([2, 2], [1, 2.5, 3, 4])["inputs"], NUMERIC)
    assert rows is not None and rows.matrix.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    assert protocol._plain_matrix(matrix_body([1, 2], [1, None])["inputs"], NUMERIC) is None
