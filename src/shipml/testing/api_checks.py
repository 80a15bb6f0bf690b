"""API checks against a running model server (``--against URL``, or one started for the
tests): the V2 protocol contract, input validation, golden requests, a short load test.

Real HTTP over a socket; the expected answers come from the package under test.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from shipml.errors import TestingError
from shipml.testing.check import Check, CheckResult, Env, always
from shipml.testing.data_checks import _records
from shipml.testing.subject import Subject


class Client:
    """A small keep-alive HTTP client (one connection; not thread-safe)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise TestingError(
                f"cannot test the server at {url!r}",
                hint="give a URL like http://host:8080 or https://host",
            )
        self.https = parsed.scheme == "https"
        self.host, self.timeout = parsed.hostname, timeout
        self.port = parsed.port or (443 if self.https else 80)
        self.base = parsed.path.rstrip("/")
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, str, Any]:
        """(status, content type, parsed JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):
            try:
                self.conn.request(method, self.base + path, data, headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self.conn.close()
                self.conn = self._connect()
                if attempt == 2:
                    raise TestingError(
                        f"{method} {path} on {self.host}:{self.port} failed: {exc}",
                        hint="is the server up? `shipml serve REF` starts one",
                    ) from exc
        ctype = resp.getheader("Content-Type") or ""
        try:
            parsed: Any = json.loads(raw) if "json" in ctype else raw.decode("utf-8", "replace")
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return resp.status, ctype, parsed

    def close(self) -> None:
        self.conn.close()


def v2_body(subject: Subject, rows: pd.DataFrame) -> dict[str, Any]:
    """A V2 infer request, one tensor per feature; missing values as null."""
    inputs = []
    for f in subject.signature.features:
        col = rows[f.name]
        data: list[Any]
        if f.type == "string":
            data = [None if v == "" else str(v) for v in col]
            datatype = "BYTES"
        else:
            data = [None if v != v else float(v) for v in col]
            datatype = "FP32"
        inputs.append({"name": f.name, "shape": [len(rows), 1], "datatype": datatype, "data": data})
    return {"inputs": inputs}


def _raw_rows(subject: Subject, n: int) -> pd.DataFrame:
    """Held-out rows as a client would send them (missing strings as None)."""
    rows = subject.holdout_features.head(n).astype(object)
    for f in subject.signature.features:
        if f.type == "string":
            rows[f.name] = rows[f.name].where(rows[f.name] != "", None)
    return rows


class _Expectations:
    """The steps of a protocol check, each with what was seen; the failed ones as problems."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.steps: list[dict[str, Any]] = []

    def __call__(self, what: str, ok: bool, seen: Any) -> None:
        self.steps.append({"step": what, "ok": ok, "seen": str(seen)[:200]})
        if not ok:
            self.problems.append(f"{what} (got {str(seen)[:120]})")


def contract(subject: Subject, env: Env) -> CheckResult:
    """The Open Inference Protocol (V2) contract: health, model metadata matching the
    signature, infer answers the package's predictions, errors are JSON with ``error``."""
    client = Client(env.server_url())
    rows = subject.holdout_features.head(3)
    expect = _Expectations()
    try:
        status, _, _ = client.request("GET", "/v2/health/live")
        expect("GET /v2/health/live is 200", status == 200, status)
        status, _, _ = client.request("GET", "/v2/health/ready")
        expect("GET /v2/health/ready is 200", status == 200, status)
        _metadata(client, subject, expect)
        _infer(client, subject, rows, expect)
        _errors(client, subject, rows, expect)
        status, ctype, _ = client.request("GET", "/metrics")
        expect(
            "GET /metrics is Prometheus text",
            status == 200 and "text/plain" in ctype,
            (status, ctype),
        )
    finally:
        client.close()
    passed = sum(s["ok"] for s in expect.steps)
    return CheckResult(
        not expect.problems,
        "; ".join(expect.problems[:3]) or f"{passed} protocol expectations hold",
        {"contract_failures": float(len(expect.problems))},
        expect.steps,
    )


def _metadata(client: Client, subject: Subject, expect: _Expectations) -> None:
    name = subject.name
    status, _, meta = client.request("GET", f"/v2/models/{name}")
    expect(f"GET /v2/models/{name} is 200", status == 200, status)
    if status != 200:
        return
    names = [i.get("name") for i in meta.get("inputs", [])]
    expect("metadata inputs are the signature's features", names == subject.signature.names, names)
    outputs = [o.get("name") for o in meta.get("outputs", [])]
    expect("metadata outputs include label", "label" in outputs, outputs)
    if subject.version is not None:  # the server serves the version under test
        versions = [str(v) for v in meta.get("versions", [])]
        expect(
            f"the server serves version {subject.version.version}",
            subject.version.version in versions,
            versions,
        )


def _infer(client: Client, subject: Subject, rows: pd.DataFrame, expect: _Expectations) -> None:
    name = subject.name
    expected, _ = subject.predict(rows)
    status, _, body = client.request("POST", f"/v2/models/{name}/infer", v2_body(subject, rows))
    expect("POST infer is 200", status == 200, body if status != 200 else status)
    if status != 200:
        return
    out = {o["name"]: o for o in body.get("outputs", [])}
    labels = out.get("label", {}).get("data")
    if subject.task == "regression" and labels is not None:
        same = bool(
            np.allclose(
                np.asarray(labels, float), np.asarray(expected, float), rtol=1e-5, atol=1e-6
            )
        )
    else:
        same = labels is not None and list(labels) == np.asarray(expected).tolist()
    expect("infer answers the package's labels", same, labels)
    expect("infer echoes the model name", body.get("model_name") == name, body.get("model_name"))


def _errors(client: Client, subject: Subject, rows: pd.DataFrame, expect: _Expectations) -> None:
    bad = v2_body(subject, rows)
    bad["inputs"] = bad["inputs"][1:]
    status, _, body = client.request("POST", f"/v2/models/{subject.name}/infer", bad)
    expect(
        "a request missing a feature is 400 with a JSON error",
        status == 400 and isinstance(body, dict) and bool(body.get("error")),
        (status, body),
    )
    status, _, body = client.request("POST", "/v2/models/no-such-model/infer", bad)
    expect(
        "an unknown model is 404 with a JSON error",
        status == 404 and isinstance(body, dict) and bool(body.get("error")),
        (status, body),
    )


def input_validation(subject: Subject, env: Env) -> CheckResult:
    """Invalid inputs are refused with 400 and an error naming the feature: wrong type,
    unknown category, missing and unknown features; nothing reaches the model."""
    client = Client(env.server_url())
    sig = subject.signature
    good = _records(_raw_rows(subject, 1))[0]
    cases: list[tuple[str, dict[str, Any], str]] = []
    numeric = next((f for f in sig.features if f.type != "string"), None)
    # Only features whose unseen-category policy is "error" refuse a new category.
    category = next(
        (f for f in sig.features if f.type == "string" and f.categories and f.unseen != "accept"),
        None,
    )
    if numeric is not None:
        cases.append(("text in a numeric feature", {**good, numeric.name: "abc"}, numeric.name))
    if category is not None:
        cases.append(
            ("an unknown category", {**good, category.name: "no-such-category"}, category.name)
        )
    first = sig.names[0]
    cases.append(("a missing feature", {k: v for k, v in good.items() if k != first}, first))
    cases.append(("an unknown feature", {**good, "no_such_feature": 1}, "no_such_feature"))
    rows, failed = [], []
    try:
        for what, record, feature in cases:
            status, _, body = client.request("POST", "/predict", {"instances": [record]})
            error = body.get("error", "") if isinstance(body, dict) else ""
            ok = status == 400 and feature in str(error)
            rows.append({"case": what, "status": status, "error": str(error)[:160], "ok": ok})
            if not ok:
                failed.append(f"{what}: {status} {str(error)[:80]!r}")
    finally:
        client.close()
    return CheckResult(
        not failed,
        "; ".join(failed) or f"{len(rows)} invalid inputs refused with 400 naming the feature",
        {"validation_failures": float(len(failed))},
        rows,
    )


def _golden_cases(subject: Subject) -> list[tuple[list[dict[str, Any]], list[Any]]]:
    cfg = subject.config.tests.api
    if cfg.golden:
        file = subject.config.path(cfg.golden)
        try:
            cases = json.loads(file.read_text(encoding="utf-8"))
            found = [(c["instances"], c["expected"]) for c in cases]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TestingError(
                f"cannot read golden requests from {file}: {exc}",
                hint='write a JSON list of {"instances": [...], "expected": [...]}',
            ) from exc
        if not found:  # nothing asked, nothing checked: not a pass
            raise TestingError(
                f"the golden requests file {file} holds no request",
                hint='write a JSON list of {"instances": [...], "expected": [...]}, or set '
                '[tests.api] golden = "" to use the package\'s held-out rows',
            )
        return found
    rows = _raw_rows(subject, cfg.golden_rows)
    expected, _ = subject.predict(subject.holdout_features.head(cfg.golden_rows))
    records = _records(rows)
    return [([r], [e]) for r, e in zip(records, np.asarray(expected).tolist(), strict=True)]


def golden(subject: Subject, env: Env) -> CheckResult:
    """Golden requests (``[tests.api] golden``, or the package's held-out rows) get the
    expected answers over HTTP."""
    cases = _golden_cases(subject)
    client = Client(env.server_url())
    wrong: list[dict[str, Any]] = []
    try:
        for instances, expected in cases:
            status, _, body = client.request("POST", "/predict", {"instances": instances})
            got = body.get("predictions") if status == 200 and isinstance(body, dict) else body
            if isinstance(got, list):  # /predict answers {label, probabilities} per row
                got = [g.get("label") if isinstance(g, dict) else g for g in got]
            if got != expected:
                wrong.append({"instances": instances, "expected": expected, "got": got})
    finally:
        client.close()
    return CheckResult(
        not wrong,
        f"{len(cases) - len(wrong)} of {len(cases)} golden requests answered as expected"
        + (
            f"; first wrong: expected {wrong[0]['expected']}, got {wrong[0]['got']}"
            if wrong
            else ""
        ),
        {"golden_mismatches": float(len(wrong))},
        wrong[:10],
    )


LOAD_ROUNDS = 4  # the requests are sent in rounds; the best round's p95 is judged


def load(subject: Subject, env: Env) -> CheckResult:
    """A short load test: ``requests`` one-row /predict calls from ``concurrency`` clients,
    in rounds; the error rate over all of them and the p95 latency of the best round within
    their bounds (a busy machine slows some rounds; a slow server slows every round)."""
    cfg = subject.config.tests.api
    url = env.server_url()
    bodies = [{"instances": [r]} for r in _records(_raw_rows(subject, 50))]
    per_round = max(1, cfg.requests // LOAD_ROUNDS)
    latencies: list[float] = []
    errors: list[str] = []
    p95s: list[float] = []
    seconds = 0.0
    sent = 0
    while sent < cfg.requests:
        count = min(per_round, cfg.requests - sent)
        took, failed, elapsed = _load_round(url, bodies, count, cfg.concurrency)
        latencies += took
        errors += failed
        p95s.append(float(np.percentile(took, 95)))
        seconds += elapsed
        sent += count
    rate = len(errors) / max(len(latencies), 1)
    p50, p95 = float(np.percentile(latencies, 50)), min(p95s)
    ok = rate <= cfg.max_error_rate and p95 <= cfg.max_p95_ms
    rounds = ", ".join(f"{v:.1f}" for v in p95s)
    return CheckResult(
        ok,
        f"{len(latencies)} requests at concurrency {cfg.concurrency}: error rate {rate:.2%} "
        f"(max {cfg.max_error_rate:.2%}), p95 {p95:.1f} ms, the best of {len(p95s)} rounds "
        f"({rounds}; max {cfg.max_p95_ms} ms), {len(latencies) / seconds:.0f} req/s"
        + (f"; first error: {errors[0]}" if errors else ""),
        {
            "error_rate": rate,
            "p95_ms": p95,
            "p50_ms": p50,
            "throughput_rps": len(latencies) / seconds,
        },
    )


def _load_round(
    url: str, bodies: list[dict[str, Any]], requests: int, concurrency: int
) -> tuple[list[float], list[str], float]:
    """Latencies (ms), failures and wall seconds of ``requests`` calls from
    ``concurrency`` threads."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        client = Client(url, timeout=10)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    status, _, body = client.request("POST", "/predict", bodies[i % len(bodies)])
                    failure = None if status == 200 else f"HTTP {status}: {str(body)[:80]}"
                except TestingError as exc:
                    failure = exc.message
                took = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(took)
                    if failure:
                        errors.append(failure)
        finally:
            client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - started


CHECKS = [
    Check("api.contract", "the V2 protocol contract", contract, always, ("infra-3",)),
    Check(
        "api.input_validation", "invalid inputs refused", input_validation, always, ("monitor-2",)
    ),
    Check("api.golden", "golden requests answered as expected", golden, always, ()),
    Check("api.load", "a short load test", load, always, ("monitor-6",)),
]
