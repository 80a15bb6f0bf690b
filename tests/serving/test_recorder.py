"""A prediction's audit record, written by the recorder alone (the server's use of it is
in tests/audit/test_server_audit.py): what it holds, and how a log that refuses the
record turns into the request's answer."""

import asyncio
import hashlib

import numpy as np
import pytest

from shipml.audit import AuditLog
from shipml.errors import InferenceFailed, RequestConflict
from shipml.serving import Predictor
from shipml.serving.predictor import Outputs
from shipml.serving.recorder import PredictionRecorder
from shipml.serving.validation import Rows

SCOPE = {"type": "http", "headers": []}


def _record(recorder, request_id=b"r-1", raw=b'{"instances": []}'):
    rows = Rows(1, matrix=np.array([[1.5, np.nan]], dtype=np.float32))
    outputs = Outputs(np.array([1]), np.array([[0.25, np.inf]], dtype=np.float32))
    return asyncio.run(recorder.record(SCOPE, request_id, "v2", rows, raw, outputs, 0.0, None))


@pytest.fixture
def predictor(penguins_package):
    return Predictor.load(penguins_package.path, name="penguins", version="3")


def test_the_record_holds_the_input_output_and_origin(tmp_path, predictor):
    log = AuditLog(tmp_path / "a.db")
    _record(PredictionRecorder(log, predictor, image_digest="sha256:abc"))
    (record,) = log.find("r-1")
    assert record["model"] == "penguins" and record["version"] == "3"
    assert record["image_digest"] == "sha256:abc" and record["variant"] == "direct"
    assert record["onnx_sha256"] == predictor.onnx_sha256 and record["protocol"] == "v2"
    # a missing number and an infinity are spelled, never written as null
    assert record["input"] == {"matrix": [[1.5, "NaN"]]}
    assert record["output"] == {"label": [1], "probabilities": [[0.25, "Infinity"]]}
    log.close()


def test_without_stored_inputs_the_record_holds_the_body_digest(tmp_path, predictor):
    log = AuditLog(tmp_path / "a.db")
    _record(PredictionRecorder(log, predictor, store_inputs=False), raw=b"body")
    (record,) = log.find("r-1")
    assert record["input"] == {"sha256": hashlib.sha256(b"body").hexdigest()}
    log.close()


def test_a_replayed_request_id_is_a_conflict_and_a_closed_log_a_failure(tmp_path, predictor):
    log = AuditLog(tmp_path / "a.db")
    recorder = PredictionRecorder(log, predictor)
    _record(recorder)
    with pytest.raises(RequestConflict, match="already in the audit log") as refused:
        _record(recorder)
    said = f"{refused.value.message} ({refused.value.hint})"
    assert said.count("request ids are unique") == 1, said  # the hint adds, never repeats
    log.close()
    with pytest.raises(InferenceFailed, match="cannot record this prediction"):
        _record(recorder, request_id=b"r-2")
