"""The gateway reads hostile requests safely: strict routes, bounded bodies, valid
request ids and tokens, short error messages, and no 5xx for any malformed request."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from shipml.asgi import call
from shipml.rollout import Gateway, Rehearsal, TrafficPolicy, Variant
from shipml.rollout.routing import Refused, bearer, read_body, route, sticky_key
from tests.rollout.conftest import instances, server

JSON = [(b"content-type", b"application/json")]
LIMIT = 4096


@pytest.fixture(scope="module")
def gateway(penguins_package):
    policy = TrafficPolicy(
        "ab",
        Variant("a", app=server(penguins_package)),
        [Variant("b", app=server(penguins_package))],
        sticky="field:island",
    )
    gw = Gateway(
        policy,
        admin_token="adm",
        feedback_token="fb",
        gatekeeper=Rehearsal(),
        max_body_bytes=LIMIT,
        seed=1,
    )
    asyncio.run(gw.start())
    yield gw
    asyncio.run(gw.stop())


def ask(gateway, method, path, body=b"", headers=()):
    return asyncio.run(call(gateway, method, path, body, [*JSON, *headers]))


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v2/models/penguins/x/y/z/infer", 404),
        ("POST", "/v2/models//infer", 404),
        ("POST", "/v2/models/penguins/versions//infer", 404),
        ("POST", "/v2/models/penguins/infer/", 404),
        ("POST", "/predict/", 404),
        ("POST", "/nope", 404),
        ("GET", "/predict", 405),
        ("DELETE", "/v1/feedback", 405),
        ("PUT", "/v1/rollout", 405),
        ("POST", "/metrics", 405),
    ],
)
def test_routing_is_strict(method, path, status):
    with pytest.raises(Refused) as refused:
        route(method, path)
    assert refused.value.status == status


def test_v2_paths_with_and_without_a_version_are_routed():
    assert route("POST", "/v2/models/penguins/infer") == "infer"
    assert route("POST", "/v2/models/penguins/versions/3/infer") == "infer"


def test_an_oversized_body_is_a_413_on_every_endpoint_before_or_while_it_is_read(gateway):
    big = b"x" * (LIMIT + 1)
    for path, headers in (
        ("/predict", []),
        ("/v2/models/penguins/infer", []),
        ("/v1/feedback", [(b"authorization", b"Bearer fb")]),
    ):
        answer = ask(gateway, "POST", path, big, headers)
        assert answer.status == 413, (path, answer.body)
        assert "limit of 4,096 bytes" in answer.json()["error"]
    huge = (b"content-length", b"209715200")  # 200 MB announced: refused unread
    assert ask(gateway, "POST", "/predict", b"", [huge]).status == 413
    admin = [(b"authorization", b"Bearer adm"), (b"content-length", b"70000")]
    assert ask(gateway, "POST", "/v1/rollout/rollback", b"", admin).status == 413


def test_a_streamed_body_stops_being_read_at_the_limit():
    chunks = 0

    async def receive():
        nonlocal chunks
        chunks += 1
        return {"type": "http.request", "body": b"y" * 1024, "more_body": True}  # forever

    with pytest.raises(Refused) as refused:
        asyncio.run(read_body({}, receive, LIMIT))
    assert refused.value.status == 413 and chunks == LIMIT // 1024 + 1


def test_request_ids_are_checked_echoed_and_a_reused_one_is_made_unique(gateway, penguins_data):
    (row, _), *_ = instances(penguins_data, 1)
    body = orjson.dumps({"instances": [row]})
    long_id = ask(gateway, "POST", "/predict", body, [(b"x-request-id", b"r" * 5000)])
    assert long_id.status == 400 and len(long_id.body) < 300  # quotes a short prefix only
    spaced = ask(gateway, "POST", "/predict", body, [(b"x-request-id", b"a b")])
    assert spaced.status == 400
    first = ask(gateway, "POST", "/predict", body, [(b"x-request-id", b"same-id")])
    again = ask(gateway, "POST", "/predict", body, [(b"x-request-id", b"same-id")])
    assert first.status == again.status == 200
    assert first.headers["x-request-id"] == "same-id"
    assert again.headers["x-request-id"].startswith("same-id.")  # one label, one answer


def test_only_a_bearer_token_opens_the_admin_and_feedback_endpoints(gateway):
    assert bearer({b"authorization": b"Bearer adm"}) == b"adm"
    assert bearer({b"authorization": b"bearer adm"}) == b"adm"
    for given in (b"adm", b"Token adm", b"Bearer", b"Bearer ", b"Basic YWRtOg=="):
        assert bearer({b"authorization": given}) is None
        answer = ask(gateway, "POST", "/v1/rollout/rollback", b"", [(b"authorization", given)])
        assert answer.status == 401, given
    wrong = ask(gateway, "POST", "/v1/feedback", b"[]", [(b"authorization", b"Bearer adm2")])
    assert wrong.status == 401
    off = Gateway(TrafficPolicy("single", Variant("a", url="http://127.0.0.1:9")))
    closed = asyncio.run(call(off, "POST", "/v1/feedback", b"[]", JSON))
    assert closed.status == 403 and "feedback_token" in closed.json()["error"]


def test_a_sticky_key_never_raises_on_a_strange_body():
    for body in (
        b"[1]",
        b'{"instances": [{"island": {"a": 1}}]}',
        b'{"inputs": [{"name": "island", "data": {"x": 1}}]}',
        b'{"inputs": [{"name": "island", "data": [[1]]}]}',
        b'{"inputs": "island"}',
        b"[" * 5000,
        b"\xff\xfe",
    ):
        assert sticky_key("field:island", {}, body) is None
    assert sticky_key("field:island", {}, b'{"instances": [{"island": "Dream"}]}') == "Dream"


# What the gateway reads itself (routes, ids, sticky keys, feedback, admin). The model
# server's own validation of inference bodies has its own fuzz test (tests/serving).
HOSTILE_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'{"inputs": []}',
    b'{"instances": [{"island": NaN}]}',
    b'{"instances": [{"island": 1e400}]}',
    b'{"inputs": [{"name": "island", "data": {"x": 1}}]}',
    b'[{"request_id": ["x"], "label": 1}]',
    b'[{"request_id": "x", "label": {"a": 1}}]',
    b'[{"request_id": "x", "label": 1e400}]',
    b"\x00\x01\x02",
    b'{"a":' * 2000,
    orjson.dumps({"instances": [{"island": "x" * 3000}]}),
]


def test_no_malformed_request_gets_a_5xx_from_any_endpoint(gateway):
    auth = {
        "/v1/feedback": [(b"authorization", b"Bearer fb")],
        "/v1/rollout/promote": [(b"authorization", b"Bearer adm")],
    }
    paths = ["/predict", "/invocations", "/v2/models/penguins/infer", *auth]
    seen = set()
    for path in paths:
        for body in HOSTILE_BODIES:
            answer = ask(gateway, "POST", path, body, auth.get(path, []))
            assert answer.status < 500, (path, body[:60], answer.status, answer.body[:200])
            assert len(answer.body) < 2000, (path, body[:60])  # no echo of a big value
            seen.add(answer.status)
    assert 400 in seen and 409 in seen  # malformed; a promotion the gates refuse


def test_single_mode_hands_the_request_to_its_in_process_champion_within_the_limit(
    penguins_package, penguins_data
):
    app = server(penguins_package)
    gw = Gateway(TrafficPolicy("single", Variant("only", app=app)), max_body_bytes=LIMIT)
    (row, _), *_ = instances(penguins_data, 1)
    body = orjson.dumps({"instances": [row]})

    async def streamed(size):
        """A body of ``size`` bytes in 1 KiB chunks, without Content-Length."""
        sent = []

        async def receive():
            left = size - 1024 * len(sent)
            sent.append(1)
            return {
                "type": "http.request",
                "body": b" " * min(1024, left),
                "more_body": left > 1024,
            }

        answers = []

        async def send(message):
            answers.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": JSON}
        await gw(scope, receive, send)
        return answers[0]["status"], len(sent)

    async def scenario():
        await gw.start()
        ok = await call(gw, "POST", "/predict", body, [(b"x-request-id", b"handed")])
        announced = await call(gw, "POST", "/predict", b"", [(b"content-length", b"99999999")])
        chunked = await streamed(1024 * 1024)
        await gw.stop()
        return ok, announced, chunked

    ok, announced, (status, chunks) = asyncio.run(scenario())
    assert ok.status == 200 and ok.headers["x-request-id"] == "handed"
    assert ok.headers["x-shipml-variant"] == "only" and gw.requests[("only", 200)] == 1
    assert announced.status == 413
    assert 400 <= status < 500 and chunks <= LIMIT // 1024 + 1  # read no further than the limit
    assert app.max_body_bytes == LIMIT


def test_an_override_needs_a_reason_of_bounded_length():
    from shipml.rollout.admin import forced

    assert forced({}) is None
    assert forced({b"x-shipml-force": b"ana%3A%20hotfix%2042"}) == "ana: hotfix 42"
    assert forced({b"x-shipml-force": b"just a reason"}) == "just a reason"
    for bad in (b"", b"ana:", b"ana:   ", b"x" * 1001):
        with pytest.raises(Refused) as refused:
            forced({b"x-shipml-force": bad})
        assert refused.value.status == 400 and len(refused.value.message) < 200


def test_an_id_given_twice_or_a_content_length_of_5000_digits_is_a_400_not_a_500(
    penguins_package, penguins_data
):
    """In single mode the request goes unread to the in-process champion, which takes
    the first X-Request-ID where the gateway took the last: the server's audit record
    and the gateway's label joined different ids, and the first was never checked."""
    gw = Gateway(TrafficPolicy("single", Variant("only", app=server(penguins_package))))
    (row, _), *_ = instances(penguins_data, 1)
    body = orjson.dumps({"instances": [row]})
    twice = [(b"x-request-id", "\u00e9".encode("latin-1") * 500), (b"x-request-id", b"ok-1")]
    huge = [(b"x-request-id", b"mine"), (b"content-length", b"9" * 5000)]

    async def scenario():
        await gw.start()
        answers = [await call(gw, "POST", "/predict", body, [*JSON, *h]) for h in (twice, huge)]
        await gw.stop()
        return answers

    given_twice, too_long = asyncio.run(scenario())
    assert given_twice.status == 400 and b"more than once" in given_twice.body
    assert not gw.analysis.seen("ok-1") and gw.requests == {}
    assert too_long.status == 400 and b"Content-Length" in too_long.body
    assert too_long.headers["x-request-id"] == "mine"  # an error names the client's id


@pytest.mark.parametrize("token", ["s3cr3t\n", " s3cr3t", "s3cr3t\t"])
def test_a_token_no_client_can_send_is_refused_when_the_gateway_starts(token):
    """``Bearer`` is read without surrounding whitespace: a token read from a secret file
    with its newline answered every request 401, with nothing to say why."""
    from shipml.errors import ConfigError

    policy = TrafficPolicy("single", Variant("only", "http://127.0.0.1:9"))
    with pytest.raises(ConfigError) as refused:
        Gateway(policy, admin_token=token)
    assert "admin_token" in refused.value.message and "newline" in (refused.value.hint or "")
    assert token.strip() not in refused.value.message  # a secret is not echoed
    Gateway(policy, admin_token="adm", feedback_token="a token with spaces")  # fine
