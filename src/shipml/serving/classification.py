"""Triton's classification extension: an output requested with ``"classification": K`` in
its parameters (what tritonclient's ``InferRequestedOutput(name, class_count=K)`` sends,
over HTTP and gRPC) comes back as the top K classes instead of the raw tensor: ``BYTES`` of
shape ``[rows, K]``, each element ``"<value>:<index>:<label>"``, highest value first.

Here it applies to ``probabilities`` (a classifier's class probabilities, labelled by the
model's classes); ``label`` already is the top class, and asking it to be classified is a
400, as is a count that is not a positive integer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shipml.errors import InvalidRequest
from shipml.serving.validation import shorten

KEY = "classification"
EXTENSION = "classification"


def requested(outputs: Any) -> int:
    """The K asked of ``probabilities`` in a V2 request's ``outputs`` (0: none asked)."""
    top = 0
    for out in outputs if isinstance(outputs, list) else []:
        params = out.get("parameters") if isinstance(out, dict) else None
        if not isinstance(params, dict) or params.get(KEY) is None:
            continue
        count = params[KEY]
        if out.get("name") != "probabilities":
            raise InvalidRequest(
                f"output {shorten(out.get('name'))} cannot be classified",
                hint="ask classification of the probabilities output "
                '({"name": "probabilities", "parameters": {"classification": 3}})',
            )
        if type(count) is not int or count < 1:
            raise InvalidRequest(
                f"classification must be a positive integer, got {shorten(count)}",
                hint="the number of top classes to return, e.g. 3",
            )
        top = count
    return top


def top_classes(body: dict[str, Any], top: int, classes: list[Any]) -> None:
    """Replace the ``probabilities`` output of a rendered V2 answer by its top classes."""
    for out in body["outputs"]:
        if out["name"] != "probabilities":
            continue
        rows, width = out["shape"]
        proba = np.asarray(out["data"], dtype=np.float32).reshape(rows, width)
        k = min(top, width)
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        labels = [str(c) for c in classes]
        out["data"] = [
            f"{proba[r, i]:f}:{i}:{labels[i]}" for r in range(rows) for i in order[r].tolist()
        ]
        out["shape"], out["datatype"] = [rows, k], "BYTES"
