"""Connections that try to stay open or to fill memory: idle, half-sent headers, a body one
byte at a time, a huge head, a 200 MB body. Real sockets against the model server run with
shipml's uvicorn options (short deadlines here, so the test is quick)."""

from __future__ import annotations

import socket
import time

import orjson
import pytest

from shipml.serving.app import ModelServer
from shipml.serving.connection import ConnectionLimits
from shipml.serving.predictor import Predictor
from tests.serving.hostile import (
    ROW,
    address,
    raw_request,
    read_response,
    rss_mb,
    send_big_body,
    serve,
    status_of,
)

LIMITS = ConnectionLimits(
    idle_timeout_s=0.5, header_timeout_s=0.5, body_timeout_s=0.5, max_header_bytes=8192
)


@pytest.fixture(scope="module")
def url(penguins_package):
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins"))
    with serve(app, LIMITS) as base:
        yield base


def _closed_within(conns: list[socket.socket], seconds: float) -> int:
    """How many of ``conns`` the server closed within ``seconds``."""
    deadline = time.monotonic() + seconds
    closed = 0
    for conn in conns:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            while conn.recv(65536):
                pass
            closed += 1
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed += 1
    return closed


def test_idle_and_half_sent_connections_are_closed_within_the_deadlines(url):
    host, port = address(url)
    conns = [socket.create_connection((host, port)) for _ in range(30)]
    for i, conn in enumerate(conns):
        if i % 3 == 1:  # half a request line
            conn.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\n")
        elif i % 3 == 2:  # headers, then half the body
            conn.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
    try:
        assert _closed_within(conns, 3.0) == 30  # deadlines are 0.5 s
    finally:
        for conn in conns:
            conn.close()


def test_half_sent_requests_are_answered_408(url):
    head_only = raw_request(url, b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n")
    assert status_of(head_only) == 408 and b"headers" in head_only
    half_body = raw_request(
        url, b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{"
    )
    assert status_of(half_body) == 408 and b"body" in half_body


def test_a_slow_drip_body_is_cut_at_the_body_deadline(url):
    host, port = address(url)
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n")
        try:
            for _ in range(20):  # one byte every 0.1 s: never idle, never finished
                conn.sendall(b" ")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_response(conn)
    assert status_of(answer) == 408
    assert time.monotonic() - started < 1.9


def test_a_huge_request_head_gets_431(url):
    answer = raw_request(url, b"GET / HTTP/1.1\r\nhost: x\r\nx-junk: " + b"a" * 20000 + b"\r\n\r\n")
    assert status_of(answer) == 431
    long_url = raw_request(url, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nhost: x\r\n\r\n")
    assert status_of(long_url) == 431


@pytest.mark.parametrize(
    "head",
    [
        b"content-length: -1\r\n",
        b"content-length: 2\r\ncontent-length: 5\r\n",
        b"content-length: 2\r\ntransfer-encoding: chunked\r\n",
        b"bad header\r\n",
    ],
)
def test_a_request_the_http_parser_refuses_gets_a_json_400(url, head):
    answer = raw_request(url, b"POST /predict HTTP/1.1\r\nhost: x\r\n" + head + b"\r\n{}")
    assert status_of(answer) == 400, answer
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head_part.lower(), answer
    assert "not valid HTTP/1.1" in orjson.loads(body)["error"]


def test_keep_alive_requests_still_work(url):
    host, port = address(url)
    body = orjson.dumps({"inputs": {"island": ["Biscoe"], "sex": ["male"]}})
    with socket.create_connection((host, port), timeout=5) as conn:
        for _ in range(3):
            conn.sendall(b"GET /v2/health/ready HTTP/1.1\r\nhost: x\r\n\r\n")
            assert status_of(read_response(conn)) == 200
        conn.sendall(
            b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        assert status_of(read_response(conn)) == 400  # a real answer: features are missing


@pytest.mark.parametrize(
    ("path", "length", "status"),
    [("/nope", 5, 404), ("/predict", 20 * 1024 * 1024, 413), ("/predict", 5, 400)],
)
def test_an_answer_before_an_expected_body_closes_the_connection(url, path, length, status):
    """curl sends Expect: 100-continue for big bodies and waits; a final answer instead of
    100 Continue means the body never comes. Kept open, the client's next request would be
    read as that body: the answer says Connection: close and the server closes."""
    host, port = address(url)
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(
            b"POST %s HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: %d\r\n\r\n" % (path.encode(), length)
        )
        answer = read_response(conn)
        if status == 400:  # the app reads the body: told to send it, the client does
            assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), answer
            conn.sendall(b"[1,2]")
            answer = read_response(conn)
            assert status_of(answer) == 400 and b"connection: close" not in answer.lower()
            conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
            assert status_of(read_response(conn)) == 200  # kept alive
            return
        assert status_of(answer) == status and b"connection: close" in answer.lower(), answer
        assert b"b'" not in answer  # the 413 quotes the length as sent, not a bytes repr
        conn.settimeout(0.3)  # well before the body deadline (0.5 s) would close it
        assert conn.recv(100) == b""


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/predict", "/invocations", "/v2/models/penguins/infer"])
def test_a_200_mb_body_is_a_413_and_memory_stays_flat(url, path, chunked):
    before = rss_mb()
    answer = send_big_body(url, path, 200 * 1024 * 1024, chunked=chunked)
    assert status_of(answer) == 413, answer[:300]
    assert b"larger than the limit" in answer
    assert rss_mb() - before < 50


def test_an_answer_leaves_in_one_write_and_a_waiting_stream_still_gets_its_head() -> None:
    import asyncio

    from shipml.serving.connection import OneWrite

    class Transport:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

    class Cycle:
        response_started = False

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        transport, cycle = Transport(), Cycle()
        out = OneWrite(transport, cycle, loop)
        out.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the start: at once
        cycle.response_started = True
        out.write(b"HEAD")
        out.write(b"BODY")
        assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", b"HEADBODY"]
        await asyncio.sleep(0)
        assert len(transport.writes) == 2  # nothing left behind
        stream, cycle = Transport(), Cycle()
        out = OneWrite(stream, cycle, loop)
        cycle.response_started = True
        out.write(b"HEAD")
        await asyncio.sleep(0)  # the body waits: the head goes on the next turn
        assert stream.writes == [b"HEAD"]
        out.write(b"CHUNK")
        assert stream.writes == [b"HEAD", b"CHUNK"]
        broken, cycle = Transport(), Cycle()
        out = OneWrite(broken, cycle, loop)
        cycle.response_started = True
        out.write(b"HEAD")
        out.close()  # an app that fails after its start: the head goes out, then the close
        assert broken.writes == [b"HEAD"] and broken.closed

    asyncio.run(scenario())


def test_a_kept_alive_connection_keeps_its_deadlines_request_after_request(url):
    """One timer per connection: after answered requests, a half-sent next one is still
    cut within its deadline (closed; uvicorn's keep-alive timer may close it before the
    408 is written, as it did before the one-timer change)."""
    host, port = address(url)
    with socket.create_connection((host, port), timeout=5) as conn:
        for _ in range(3):
            conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
            assert status_of(read_response(conn)) == 200
            time.sleep(0.2)  # less than the 0.5 s idle deadline
        started = time.monotonic()
        conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n")  # no end of headers
        answer = read_response(conn)
    assert answer == b"" or (status_of(answer) == 408 and b"headers" in answer)
    assert time.monotonic() - started < 1.5  # closed: read_response saw the end


def test_a_connection_idle_after_its_answer_is_closed_at_the_idle_deadline(url):
    """After a whole request and its answer, the idle deadline (on the connection's one
    timer, not a keep-alive timer per answer) closes a connection that sends nothing more;
    one that sends its next request in time is answered."""
    host, port = address(url)
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        assert status_of(read_response(conn)) == 200
        time.sleep(0.3)  # within the 0.5 s idle deadline: still open
        conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        assert status_of(read_response(conn)) == 200
        started = time.monotonic()
        assert _closed_within([conn], 3.0) == 1
    assert 0.3 < time.monotonic() - started < 1.5


def _v2_body(size: int, row: dict[str, object]) -> bytes:
    """A valid V2 body for one penguins row, padded with JSON white space to ``size``."""
    inputs = [
        {
            "name": k,
            "shape": [1],
            "datatype": "BYTES" if isinstance(v, str) else "FP64",
            "data": [v],
        }
        for k, v in row.items()
    ]
    body = orjson.dumps({"inputs": inputs})
    return body[:-1] + b" " * (size - len(body)) + b"}"


INFER = b"POST /v2/models/penguins/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"


def test_bodies_held_at_once_are_bounded_a_503_beyond_and_freed_after(penguins_package):
    """Two clients hold nearly-sent bodies; a third that would pass max_buffered_bytes is
    a 503 before its body is read; the two finish and are answered; every byte held is
    given back, after an answer or a refusal alike."""
    app = ModelServer(
        Predictor.load(penguins_package.path, name="penguins"),
        max_body_bytes=64 * 1024,
        max_buffered_bytes=128 * 1024,
    )
    body = _v2_body(60 * 1024, ROW)
    limits = ConnectionLimits(idle_timeout_s=5, header_timeout_s=5, body_timeout_s=5)
    with serve(app, limits) as url:
        holders = [socket.create_connection(address(url), timeout=10) for _ in range(2)]
        for conn in holders:  # chunked: nothing declared, the bytes count as they arrive
            conn.sendall(INFER + b"transfer-encoding: chunked\r\n\r\n")
            conn.sendall(b"%x\r\n%s\r\n" % (len(body) - 10, body[:-10]))
        deadline = time.monotonic() + 10
        while app.bodies.held < 2 * (len(body) - 10) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.bodies.held == 2 * (len(body) - 10)
        with socket.create_connection(address(url), timeout=10) as third:
            third.sendall(INFER + b"content-length: %d\r\n\r\n" % len(body))
            refused = read_response(third)  # answered from its Content-Length alone
        assert status_of(refused) == 503 and b"max_buffered_bytes (131072)" in refused
        for conn in holders:
            conn.sendall(b"a\r\n%s\r\n0\r\n\r\n" % body[-10:])
            answer = read_response(conn)
            assert status_of(answer) == 200, answer[-300:]
            conn.close()
        assert app.bodies.held == 0
        for data, status in ((body, 200), (body.replace(b"[45.5]", b'["x"]'), 400)):
            with socket.create_connection(address(url), timeout=10) as conn:
                conn.sendall(INFER + b"content-length: %d\r\n\r\n%s" % (len(data), data))
                assert status_of(read_response(conn)) == status
            assert app.bodies.held == 0
        huge = raw_request(url, INFER + b"content-length: " + b"9" * 5000 + b"\r\n\r\n")
        assert status_of(huge) in (400, 413), huge[:200]  # never a 500
