"""Online analysis that cannot be forged: without the token no label counts, a label
counts once, only for a request this gateway answered, within the window; floods of
client errors count against nobody. Neither moves a canary's step or its decision."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from shipml.asgi import call, post_json
from shipml.audit import AuditLog
from shipml.rollout import Gateway, Rehearsal, TrafficPolicy, Variant
from shipml.rollout.feedback import parse_labels
from shipml.rollout.routing import Refused
from tests.rollout.conftest import instances, server

LABELLER = [(b"authorization", b"Bearer fb-token")]


def canary(good, worse, **kwargs):
    policy = TrafficPolicy(
        "canary",
        Variant("champion", app=good),
        [Variant("challenger", app=worse)],
        steps=[50.0, 100.0],
        min_samples=40,
        min_requests=20,
        max_p99_ms=60_000,  # latency is not under test (a loaded CI machine)
        interval_s=3600,
    )
    return Gateway(policy, feedback_token="fb-token", gatekeeper=Rehearsal(), seed=3, **kwargs)


@pytest.fixture(scope="module")
def apps(penguins_package, worse_package):
    return server(penguins_package), server(worse_package)


async def predict(gateway, rows, prefix):
    """The rows through the gateway; (request id, variant, predicted label) per answer."""
    out = []
    for i, (row, _) in enumerate(rows):
        rid = f"{prefix}{i}".encode()
        answer = await post_json(
            gateway, "/predict", {"instances": [row]}, [(b"x-request-id", rid)]
        )
        assert answer.status == 200
        label = answer.json()["predictions"][0]["label"]
        out.append((rid.decode(), answer.headers["x-shipml-variant"], label))
    return out


def test_forged_feedback_and_client_error_floods_move_no_decision(apps, penguins_data, tmp_path):
    gateway = canary(*apps, audit=AuditLog(tmp_path / "audit.db"))
    rows = instances(penguins_data)[:150]

    async def scenario():
        await gateway.start()
        answered = await predict(gateway, rows, "p")
        # The attacker's labels: the challenger always right, the champion always wrong.
        forged = [
            {"request_id": rid, "label": label if variant == "challenger" else "Nobody"}
            for rid, variant, label in answered
        ]
        body = orjson.dumps(forged)
        for headers in ([], [(b"authorization", b"fb-token")], [(b"authorization", b"Bearer x")]):
            refused = await call(gateway, "POST", "/v1/feedback", body, headers)
            assert refused.status == 401
        never = [{"request_id": f"made-up-{i}", "label": "Adelie"} for i in range(300)]
        unknown = (await post_json(gateway, "/v1/feedback", never, LABELLER)).json()
        for _ in range(300):  # client errors, every kind
            for bad in (b'{"inputs": []}', b"{", b'{"instances": [{"island": "Mars"}]}'):
                await call(gateway, "POST", "/predict", bad, [(b"content-type", b"a/json")])
        decision = gateway.decide()
        return answered, unknown, decision

    answered, unknown, decision = asyncio.run(scenario())
    assert unknown == {
        "received": 300,
        "matched": 0,
        "unmatched": {"unknown": 300},
        "recorded": 0,  # only a label for an answer of this gateway goes into the audit log
    }
    assert decision == "waiting" and gateway.step == 0 and gateway.state == "running"
    variants = gateway.status()["analysis"]["variants"]
    assert variants["challenger"]["labelled"] == 0 and variants["challenger"]["error_rate"] == 0
    assert variants["challenger"]["client_errors"] + variants["champion"]["client_errors"] == 900

    async def honest():
        truth = dict((f"p{i}", label) for i, (_, label) in enumerate(rows))
        labels = [{"request_id": rid, "label": truth[rid]} for rid, _, _ in answered]
        counted = (await post_json(gateway, "/v1/feedback", labels, LABELLER)).json()
        replayed = (await post_json(gateway, "/v1/feedback", labels, LABELLER)).json()
        decision = gateway.decide()
        await gateway.stop()
        return counted, replayed, decision

    counted, replayed, decision = asyncio.run(honest())
    assert counted["matched"] == counted["recorded"] == 150
    assert replayed["unmatched"] == {"already labelled": 150} and replayed["recorded"] == 0
    assert decision == "rolled back"  # the true labels show the challenger worse
    log = AuditLog(tmp_path / "audit.db")
    kinds = [[r["kind"] for r in log.find(rid)] for rid, _, _ in answered]
    assert all(k.count("feedback") == 1 for k in kinds)  # each label once, no forged one
    assert log.find("made-up-1") == []


def test_a_label_for_an_old_answer_is_refused(apps, penguins_data):
    gateway = canary(*apps, feedback_window_s=0.2)
    rows = instances(penguins_data)[:3]

    async def scenario():
        answered = await predict(gateway, rows, "w")
        await asyncio.sleep(0.4)
        late = [{"request_id": rid, "label": "Adelie"} for rid, _, _ in answered]
        return (await post_json(gateway, "/v1/feedback", late, LABELLER)).json()

    late = asyncio.run(scenario())
    assert late["unmatched"] == {"expired": 3} and late["matched"] == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[]", "no labels"),
        (b'{"request_id": "a"}', "expected"),
        (b'[{"request_id": true, "label": "x"}]', "request_id must be a string"),
        (b'[{"request_id": ["a"], "label": "x"}]', "request_id must be a string"),
        (b'[{"request_id": "", "label": "x"}]', "request_id must be a string"),
        (orjson.dumps([{"request_id": "r" * 500, "label": "x"}]), "of 1 to 128"),
        (b'[{"request_id": "a", "label": {"k": 1}}]', "label must be"),
        (b'[{"request_id": "a", "label": NaN}]', "malformed JSON"),
        (orjson.dumps([{"request_id": "a", "label": "x" * 300}]), "longer than 256"),
        (orjson.dumps([{"request_id": f"{i}", "label": 1} for i in range(10_001)]), "at most"),
    ],
)
def test_malformed_feedback_is_a_400_that_names_the_problem(body, says):
    with pytest.raises(Refused) as refused:
        parse_labels(body)
    assert refused.value.status == 400 and says in refused.value.message
    assert len(refused.value.message) < 300


def test_labels_of_one_row_or_several_and_numeric_ids():
    assert parse_labels(b'[{"request_id": "a", "label": ["Gentoo"]}]') == [("a", "Gentoo")]
    assert parse_labels(b'{"request_id": 7, "label": 1.5}') == [("7", 1.5)]
    rows = parse_labels(b'{"request_id": "b", "label": ["Adelie", "Gentoo"]}')
    assert rows == [("b", ["Adelie", "Gentoo"])]
    with pytest.raises(Refused, match="label must be"):
        parse_labels(b'{"request_id": "b", "label": ["Adelie", [1]]}')


def test_labels_for_answers_whose_id_the_single_gateway_made(apps, penguins_data):
    """Single mode, the champion in process, requests without X-Request-ID: the gateway
    makes each id and remembers the answer by number (no dict entry per answer); a label
    counts once, only for an answer it gave, and a late one is expired."""
    policy = TrafficPolicy("single", Variant("champion", app=apps[0]))
    gateway = Gateway(policy, feedback_token="fb-token", feedback_window_s=0.5)
    rows = instances(penguins_data)[:20]

    async def scenario():
        await gateway.start()
        made = []
        for row, _ in rows:
            answer = await post_json(gateway, "/predict", {"instances": [row]})
            assert answer.status == 200
            made.append(answer.headers["x-request-id"])
        given = await post_json(
            gateway, "/predict", {"instances": [rows[0][0]]}, [(b"x-request-id", b"mine-1")]
        )
        refused = await call(
            gateway, "POST", "/predict", b'{"inputs": []}', [(b"content-type", b"a/json")]
        )
        kept = list(gateway.analysis.predictions)  # the dict holds only the client's id
        prefix, _, last = made[-1].rpartition("-")
        labels = [{"request_id": rid, "label": "Adelie"} for rid in made[:10]]
        labels += [
            {"request_id": "mine-1", "label": "Adelie"},  # an id the client gave
            {"request_id": f"{prefix}-{int(last) + 50}", "label": "Adelie"},  # never made
            {"request_id": refused.headers["x-request-id"], "label": "Adelie"},  # a 4xx
        ]
        first = (await post_json(gateway, "/v1/feedback", labels, LABELLER)).json()
        again = (await post_json(gateway, "/v1/feedback", labels[:10], LABELLER)).json()
        await asyncio.sleep(0.7)
        late = [{"request_id": rid, "label": "Adelie"} for rid in made[10:]]
        expired = (await post_json(gateway, "/v1/feedback", late, LABELLER)).json()
        await gateway.stop()
        return given, refused, kept, first, again, expired

    given, refused, kept, first, again, expired = asyncio.run(scenario())
    assert given.status == 200 and refused.status == 400 and kept == ["mine-1"]
    assert first["matched"] == 11 and first["unmatched"] == {"unknown": 2}
    assert again["matched"] == 0 and again["unmatched"] == {"already labelled": 10}
    assert expired["matched"] == 0 and expired["unmatched"] == {"expired": 10}


def test_an_id_the_gateway_made_and_a_client_sent_again_takes_one_label(apps, penguins_data):
    """A client that sends, as its own X-Request-ID, an id the gateway made for another
    request: two answers under one id, and still one label for it, in either order."""
    policy = TrafficPolicy("single", Variant("champion", app=apps[0]))
    gateway = Gateway(policy, feedback_token="fb-token")
    row = instances(penguins_data)[0][0]

    async def label(rid):
        labels = [{"request_id": rid.decode(), "label": "Adelie"}]
        return (await post_json(gateway, "/v1/feedback", labels, LABELLER)).json()

    async def predict(rid=None):
        given = [(b"x-request-id", rid)] if rid else []
        answer = await post_json(gateway, "/predict", {"instances": [row]}, given)
        assert answer.status == 200
        return answer.headers["x-request-id"].encode()

    async def scenario():
        rid = await predict()  # the gateway makes the id
        both_first = [await predict(rid), await label(rid), await label(rid)]
        rid = await predict()
        made_first = [await label(rid), await predict(rid), await label(rid)]
        return both_first[1:], made_first[::2]

    for first, second in asyncio.run(scenario()):
        assert first["matched"] == 1
        assert second["matched"] == 0 and second["unmatched"] == {"already labelled": 1}


@pytest.mark.parametrize("mode", ["single", "ab"])
def test_an_id_the_gateway_has_not_made_yet_is_refused(apps, penguins_data, mode):
    """The gateway's ids are PREFIX-N, and every answer shows PREFIX: a client that
    sent PREFIX-(N+k) (or ID.PREFIX-(N+k), the form of a reused id) as its own took a
    later client's id, and that client's label joined the first one's prediction."""
    challengers = [Variant("twin", app=apps[0])] if mode == "ab" else []
    policy = TrafficPolicy(mode, Variant("champion", app=apps[0]), challengers)
    gateway = Gateway(policy, feedback_token="fb-token")
    row = instances(penguins_data)[0][0]

    async def predict(rid=None):
        given = [(b"x-request-id", rid)] if rid else []
        return await post_json(gateway, "/predict", {"instances": [row]}, given)

    async def scenario():
        made = (await predict()).headers["x-request-id"].encode()
        prefix, _, number = made.rpartition(b"-")
        ahead = [b"%s-%d" % (prefix, int(number) + 3), b"x.%s-%d" % (prefix, int(number) + 3)]
        ahead.append(b"%s-%s" % (prefix, b"9" * 30))
        refused = [await predict(rid) for rid in ahead]
        again = await predict(made)  # an id it gave: a client may send it again
        later = [(await predict()).headers["x-request-id"] for _ in range(3)]
        labels = [{"request_id": later[-1], "label": "Adelie"}]
        counted = (await post_json(gateway, "/v1/feedback", labels, LABELLER)).json()
        return refused, again, later, counted

    refused, again, later, counted = asyncio.run(scenario())
    assert [r.status for r in refused] == [400, 400, 400]
    assert b"has not given yet" in refused[0].body and len(refused[2].body) < 400
    assert again.status == 200 and len(set(later)) == 3
    assert counted["matched"] == 1
