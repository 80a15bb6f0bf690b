"""The model server over a real socket: `shipml serve` in its own process."""

import http.client
import json
import pickle
import random
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from tests.conftest import shipml


def test_triton_client_gets_the_in_process_predictions(
    penguins_server, penguins_package, penguins_data
):
    X, _ = penguins_data
    rows = X.iloc[:25]
    client = triton.InferenceServerClient(urlparse(penguins_server).netloc)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("penguins")
    meta = client.get_model_metadata("penguins")
    inputs = []
    for feature in meta["inputs"]:
        name = feature["name"]
        if feature["datatype"] == "BYTES":
            data = np.asarray([["" if v != v else v] for v in rows[name].tolist()], dtype=object)
        else:
            data = rows[[name]].to_numpy(dtype=np.float32)
        tensor = triton.InferInput(name, list(data.shape), feature["datatype"])
        tensor.set_data_from_numpy(data, binary_data=False)
        inputs.append(tensor)
    outputs = [
        triton.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")
    ]
    result = client.infer("penguins", inputs, outputs=outputs, request_id="t-1")
    labels, proba = penguins_package.predict(rows)
    got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
    assert got == labels.tolist()
    assert np.array_equal(result.as_numpy("probabilities"), proba.astype(np.float32))


def test_triton_client_matrix_input(cancer_server, cancer_package, cancer_data):
    X, _ = cancer_data
    client = triton.InferenceServerClient(urlparse(cancer_server).netloc)
    tensor = triton.InferInput("input", [10, 30], "FP32")
    tensor.set_data_from_numpy(X.iloc[:10].to_numpy(dtype=np.float32), binary_data=False)
    result = client.infer(
        "cancer", [tensor], outputs=[triton.InferRequestedOutput("label", binary_data=False)]
    )
    assert result.as_numpy("label").tolist() == cancer_package.predict(X.iloc[:10])[0].tolist()


def _penguin_request(row) -> bytes:
    inputs = []
    for name, value in row.items():
        if (
            isinstance(value, str)
            or value is None
            or (isinstance(value, float) and value != value and name in ("island", "sex"))
        ):
            inputs.append(
                {
                    "name": name,
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [None if value != value else value],
                }
            )
        else:
            inputs.append(
                {
                    "name": name,
                    "shape": [1],
                    "datatype": "FP32",
                    "data": [None if value != value else float(value)],
                }
            )
    return json.dumps({"inputs": inputs}).encode()


def test_32_clients_2000_requests_each_answers_equal_unbatched(
    penguins_server, penguins_package, penguins_data
):
    X, _ = penguins_data
    labels, _ = penguins_package.predict(X)  # the unbatched reference is one row at a time:
    single = [penguins_package.predict(X.iloc[[i]]) for i in range(len(X))]
    bodies = [_penguin_request(X.iloc[i].to_dict()) for i in range(len(X))]
    host = urlparse(penguins_server)
    errors: list[str] = []
    mismatches: list[int] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        for _ in range(2000):
            i = rng.randrange(len(bodies))
            conn.request(
                "POST", "/v2/models/penguins/infer", bodies[i], {"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                errors.append(f"{resp.status}: {data[:200]!r}")
                continue
            outs = {o["name"]: o["data"] for o in json.loads(data)["outputs"]}
            ref_label, ref_proba = single[i]
            if outs["label"] != ref_label.tolist() or not np.array_equal(
                np.float32(outs["probabilities"]), ref_proba.reshape(-1).astype(np.float32)
            ):
                mismatches.append(i)
        conn.close()

    threads = [threading.Thread(target=client, args=(s,)) for s in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert mismatches == []
    assert labels.tolist() == [s[0][0] for s in single]  # batch of all == one by one
    conn = http.client.HTTPConnection(host.hostname, host.port)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    count = float(text.split("shipml_batch_size_rows_count{")[1].split("} ")[1].split()[0])
    total = float(text.split("shipml_batch_size_rows_sum{")[1].split("} ")[1].split()[0])
    assert total >= 64_000 and total / count > 1.0  # requests really were batched together


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FEATURES = [
    "island",
    "sex",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "year",
    "input",
    "extra",
]
TENSOR = st.fixed_dictionaries(
    {
        "name": st.sampled_from(FEATURES),
        "shape": st.lists(st.integers(-1, 3), min_size=0, max_size=3) | JSON_VALUES,
        "datatype": st.sampled_from(["BYTES", "FP32", "INT64", "BOOL", "FP64", "nope"]),
        "data": st.lists(JSON_VALUES, max_size=4) | JSON_VALUES,
    },
)
BODIES = (
    st.fixed_dictionaries(
        {"inputs": st.lists(TENSOR, max_size=9)},
        optional={"id": JSON_VALUES, "outputs": JSON_VALUES},
    )
    | st.fixed_dictionaries(
        {"instances": st.lists(st.dictionaries(st.sampled_from(FEATURES), JSON_VALUES), max_size=3)}
    )
    | JSON_VALUES
)
PATHS = ["/v2/models/penguins/infer", "/invocations", "/predict"]
FUZZED: list[int] = []


def test_fuzzing_never_gives_a_5xx_and_every_4xx_says_why(penguins_server):
    host = urlparse(penguins_server)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)

    @settings(
        max_examples=600, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(body=BODIES, path=st.sampled_from(PATHS), raw=st.booleans())
    def one(body, path, raw):
        data = json.dumps(body).encode()
        if raw:
            data = data[: max(1, len(data) // 2)]  # truncated JSON too
        conn.request("POST", path, data, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        FUZZED.append(resp.status)
        assert resp.status < 500, answer
        if resp.status >= 400:
            assert isinstance(answer.get("error"), str) and answer["error"]

    one()
    conn.close()
    assert len(FUZZED) >= 500
    assert any(s == 400 for s in FUZZED)


def test_a_pickle_offered_as_a_model_is_refused(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit([[0.0], [1.0]], [0, 1])))
    result = shipml("serve", str(path), cwd=tmp_path)
    assert result.returncode == 8
    assert "pickle-family file" in result.stderr and "package_model" in result.stderr
    assert "Traceback" not in result.stderr
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(path.read_bytes())
    result = shipml("serve", str(folder), cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_several_workers_serve_the_same_model(penguins_package, penguins_data):
    from tests.serving.conftest import start_server

    proc, url = start_server(penguins_package.path, "--workers", "2")
    try:
        X, _ = penguins_data
        host = urlparse(url)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        for i in range(20):
            conn.request(
                "POST",
                "/v2/models/penguins/infer",
                _penguin_request(X.iloc[i].to_dict()),
                {"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_sigterm_drains_in_flight_requests(penguins_package, penguins_data):
    import signal
    import time

    from tests.serving.conftest import start_server

    proc, url = start_server(penguins_package.path)
    X, _ = penguins_data
    body = _penguin_request(X.iloc[0].to_dict())
    host = urlparse(url)
    statuses: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
                conn.request(
                    "POST", "/v2/models/penguins/infer", body, {"Content-Type": "application/json"}
                )
                resp = conn.getresponse()
                resp.read()
                statuses.append(resp.status)
                conn.close()
            except ConnectionRefusedError:
                return  # the server stopped accepting: expected after SIGTERM
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                return

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    # uvicorn drains, then re-raises the signal so the exit status says SIGTERM
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert statuses and set(statuses) == {200}
    # a connection may be closed between requests, never in the middle of an answer
    assert all("RemoteDisconnected" in f or "Connection reset" in f for f in failures), failures


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_the_worker_that_parses_big_bodies_never_outlives_the_server(
    penguins_package, penguins_data, signal_name
):
    """A body over 256 KiB starts a parsing process; the server's end (SIGTERM, or kill -9)
    is its end too."""
    import json
    import os
    import signal
    import urllib.request

    from tests.conftest import children_of
    from tests.serving.conftest import start_server

    proc, url = start_server(penguins_package.path)
    X, _ = penguins_data
    record = json.loads(X.iloc[[0]].to_json(orient="records"))[0]
    body = json.dumps({"instances": [record] * 3000}).encode()
    request = urllib.request.Request(
        f"{url}/predict", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 200
    helpers = children_of(proc.pid)
    assert helpers  # the parsing worker (and multiprocessing's resource tracker)
    os.kill(proc.pid, getattr(signal, signal_name))
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    alive = helpers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in helpers if Path(f"/proc/{pid}").exists()]
    for pid in alive:  # do not leave them behind if the test fails
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def test_a_server_on_loopback_answers_only_requests_that_name_it(penguins_package, penguins_data):
    """DNS rebinding: a web page whose name its DNS turns into 127.0.0.1 is, for the
    browser, the same origin as `shipml serve` on loopback, and sends its own name in
    Host. That server refuses it (403) on every route; one on every interface (a
    container, reached by any name) answers it, as it answers a loopback name."""
    from tests.serving.conftest import start_server

    X, _ = penguins_data
    body = json.dumps({"instances": json.loads(X.iloc[[0]].to_json(orient="records"))})
    started = [start_server(penguins_package.path, *bind) for bind in ([], ["--host", "0.0.0.0"])]
    try:

        def ask(url: str, host: str) -> list[tuple[int, bytes]]:
            answers = []
            for method, path, data in (("POST", "/predict", body), ("GET", "/", None)):
                conn = http.client.HTTPConnection(urlparse(url).hostname, urlparse(url).port)
                conn.request(method, path, data, {"Host": host, "Content-Type": "application/json"})
                answer = conn.getresponse()
                answers.append((answer.status, answer.read()))
                conn.close()
            return answers

        for (_, url), refused in zip(started, (True, False), strict=True):
            port = urlparse(url).port
            assert [s for s, _ in ask(url, f"localhost:{port}")] == [200, 200]
            foreign = ask(url, f"rebind.evil.example:{port}")
            if refused:
                assert [s for s, _ in foreign] == [403, 403]
                assert b"DNS rebinding" in foreign[0][1]
            else:
                assert [s for s, _ in foreign] == [200, 200]
    finally:
        for proc, _ in started:
            proc.terminate()
            proc.wait(timeout=30)
