"""The dashboard app: a slow overview (verifying a large audit log takes seconds) does not
stop it answering, and its JSON is standard JSON."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from shipml.asgi import call, exchange, scope_of
from shipml.errors import ConfigError
from shipml.report.dashboard import Dashboard, needs_token, token_for


async def _get(app: Dashboard, path: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path}, receive, send)
    return sent[0]["status"], sent[1]["body"]


def test_health_answers_while_the_overview_is_gathered():
    release = threading.Event()

    def slow() -> dict[str, Any]:
        release.wait(10)
        return {"metric": float("nan")}

    app = Dashboard(slow)

    async def main() -> None:
        page = asyncio.create_task(_get(app, "/api/overview"))
        await asyncio.sleep(0.05)
        # the loop is free: gathered synchronously, this waited for the overview
        assert await asyncio.wait_for(_get(app, "/healthz"), 2) == (200, b"ok")
        release.set()
        status, body = await page
        assert status == 200
        assert json.loads(body, parse_constant=lambda c: pytest.fail(f"JSON has {c}")) == {
            "metric": None
        }

    asyncio.run(main())


def test_a_dashboard_other_machines_reach_needs_its_token():
    """Bound beyond loopback it shows recent predictions to anyone: a token is needed,
    as a bearer header, or once in the address (then a cookie, the address cleaned)."""
    app = Dashboard(lambda: {"models": []}, token="t0ken-of-the-dashboard")

    async def main() -> None:
        assert (await call(app, "GET", "/api/overview")).status == 401
        assert (await call(app, "GET", "/")).status == 401
        wrong = [(b"authorization", b"Bearer not-the-token-at-all")]
        assert (await call(app, "GET", "/api/overview", headers=wrong)).status == 401
        assert (await call(app, "GET", "/healthz")).status == 200  # probes stay open
        bearer = [(b"authorization", b"Bearer t0ken-of-the-dashboard")]
        assert (await call(app, "GET", "/api/overview", headers=bearer)).json() == {"models": []}
        scope = scope_of("GET", "/", [], query_string=b"token=t0ken-of-the-dashboard")
        moved = await exchange(app, scope, b"")
        assert moved.status == 303 and moved.headers["location"] == "/"
        cookie = moved.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        jar = [(b"cookie", cookie.split(";")[0].encode())]
        assert (await call(app, "GET", "/api/overview", headers=jar)).json() == {"models": []}
        bad = scope_of("GET", "/", [], query_string=b"token=guess")
        assert (await exchange(app, bad, b"")).status == 401

    asyncio.run(main())


@pytest.mark.parametrize(
    ("host", "needs"),
    [("127.0.0.1", False), ("::1", False), ("[::1]", False), ("localhost", False),
     ("127.0.0.2", False), ("0.0.0.0", True), ("::", True), ("10.1.2.3", True),
     ("dashboard.example", True)],
)  # fmt: skip
def test_which_hosts_need_a_token(host, needs):
    assert needs_token(host) is needs
    token, made = token_for(host, None)
    assert (token is not None) is needs and made is needs
    if needs:
        assert len(token) >= 32 and token != token_for(host, None)[0]  # new each start


def test_a_given_token_is_used_everywhere_and_a_bad_one_refused():
    assert token_for("127.0.0.1", "a-token-of-16-chars") == ("a-token-of-16-chars", False)
    for bad in ("short", "has spaces in it ok", "semi;colon-in-the-token", "x" * 201):
        with pytest.raises(ConfigError, match="SHIPML_DASHBOARD_TOKEN must be"):
            token_for("0.0.0.0", bad)


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ([(b"cookie", b"\x00\xff;;;=")], b"", 401),
        ([(b"cookie", b'a="unterminated')], b"", 401),
        ([(b"cookie", b"x" * 100_000)], b"", 401),
        # a second cookie of the name overrides the first: never both
        ([(b"cookie", b"shipml_dashboard=t0ken-of-the-dashboard; shipml_dashboard=x")], b"", 401),
        ([(b"authorization", b"Bearer t0ken-of-the-dashboard\xff")], b"", 401),
        ([(b"authorization", b"t0ken-of-the-dashboard")], b"", 401),  # Bearer only
        ([], b"token=%ff%fe", 401),
        ([], b"token=" + b"a" * 100_000, 401),
        ([], b"%%%&&=", 401),
        ([], b"token=t0ken-of-the-dashboard%00", 401),
    ],
)
def test_a_malformed_or_forged_credential_is_a_401_never_a_500(headers, query, status):
    app = Dashboard(lambda: {"models": []}, token="t0ken-of-the-dashboard")
    answer = asyncio.run(
        exchange(app, scope_of("GET", "/api/overview", headers, query_string=query), b"")
    )
    assert answer.status == status, answer


@pytest.mark.parametrize("path", ["/", "/api/overview", "/healthz", "/nowhere"])
def test_every_answer_forbids_framing_caching_and_sniffing(path):
    """The page's <meta> policy cannot say frame-ancestors: without the headers another
    site could frame a token holder's dashboard (clickjacking), and a cache keep its
    recent predictions."""
    app = Dashboard(lambda: {"models": []}, token="t0ken-of-the-dashboard")
    bearer = [(b"authorization", b"Bearer t0ken-of-the-dashboard")]
    for headers in (bearer, []):  # admitted, and refused (401)
        answer = asyncio.run(call(app, "GET", path, headers=headers))
        got = answer.headers
        assert "frame-ancestors 'none'" in got["content-security-policy"], (path, got)
        assert "default-src 'none'" in got["content-security-policy"]
        assert got["x-frame-options"] == "DENY" and got["cache-control"] == "no-store"
        assert got["x-content-type-options"] == "nosniff"
        assert got["referrer-policy"] == "no-referrer"


def test_the_token_redirect_never_leaves_the_dashboard():
    """``//elsewhere.example/?token=...`` sent the browser, cookie set, to another site."""
    app = Dashboard(lambda: {"models": []}, token="t0ken-of-the-dashboard")
    for path, back in [("//elsewhere.example/", "/"), ("/api/overview", "/api/overview")]:
        scope = scope_of("GET", path, [], query_string=b"token=t0ken-of-the-dashboard")
        moved = asyncio.run(exchange(app, scope, b""))
        assert moved.status == 303 and moved.headers["location"] == back


def test_recent_predictions_show_a_bounded_cell_of_each_record():
    """A request id is the client's header and a label a whole batch's: 20 records of a
    100,000-label batch made a page of megabytes. The table cuts them; the JSON does not."""
    from shipml.report.dashboard import CELL, render

    row = {
        "seq": 1,
        "time": "2026-12-05T01:00:00",
        "request_id": "r" * 60_000,
        "model": "m/1",
        "variant": None,
        "label": ["setosa"] * 100_000,
        "latency_ms": 1.0,
    }
    overview = {
        "project": "p",
        "time": "now",
        "models": [],
        "rollout": {"error": "no gateway", "url": "-"},
        "monitor": None,
        "predictions": {"verified": {"ok": True, "records": 20}, "rows": [row] * 20},
    }
    page = render(overview)
    assert len(page) < 50_000 and "r" * CELL not in page and "r" * (CELL - 1) in page
    app = Dashboard(lambda: overview)
    whole = asyncio.run(call(app, "GET", "/api/overview")).json()
    assert whole["predictions"]["rows"][0]["label"] == row["label"]


@pytest.mark.parametrize(
    ("host", "status"),
    [(b"127.0.0.1:8050", 200), (b"localhost:8050", 200), (b"[::1]:8050", 200),
     (b"localhost", 200), (b"rebound.example:8050", 403), (b"rebound.example", 403),
     (b"10.0.0.1:8050", 403), (b"", 403)],
)  # fmt: skip
def test_a_dashboard_without_a_token_answers_only_to_loopback_names(host, status):
    """DNS rebinding: a site whose name an attacker points at 127.0.0.1 is, for the
    browser, the page's own origin: it read the token-less dashboard's predictions."""
    app = Dashboard(lambda: {"models": []})
    answer = asyncio.run(call(app, "GET", "/api/overview", headers=[(b"host", host)]))
    assert answer.status == status, answer.body
    assert asyncio.run(call(app, "GET", "/healthz", headers=[(b"host", host)])).status == 200


def test_a_dashboard_behind_a_local_reverse_proxy_answers_the_names_it_is_given():
    """[http] allowed_hosts, as for the model server and the gateway: the proxy's site
    name is answered, any other name still refused."""
    app = Dashboard(lambda: {"models": []}, allowed_hosts=["Dash.Acme.test"])
    for host, status in ((b"dash.acme.test:443", 200), (b"rebind.evil.example", 403)):
        answer = asyncio.run(call(app, "GET", "/api/overview", headers=[(b"host", host)]))
        assert answer.status == status, answer.body
