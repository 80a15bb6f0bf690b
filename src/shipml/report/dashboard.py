"""The ``shipml dashboard`` page: how every model is doing, on one page.

A plain ASGI app (like the model server's page): ``GET /`` renders the project's
overview (gathered by a callable, ``shipml.project.dashboard.overview``) as one
self-contained HTML page — tables, inline SVG charts, no script, no external resource
(a Content-Security-Policy forbids any), refreshed every 30 s. ``GET /api/overview``
returns the same data as JSON; ``GET /healthz`` answers ``ok``. Every text from the
project (names, labels, request ids) is escaped.
"""

from __future__ import annotations

import asyncio
import hmac
import http.cookies
import json
import logging
import re
import secrets
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from shipml.errors import ConfigError
from shipml.files import finite_json
from shipml.loopback import LoopbackHosts, is_loopback
from shipml.report import charts
from shipml.report.html import CSP, Markup, number, page, table, tag
from shipml.report.monitor import MAX_CHARTS, MAX_SERIES, most_drifted

log = logging.getLogger("shipml.dashboard")
CELL = 80  # characters of a text from a prediction's record shown in its table
Scope = dict[str, Any]


def _status(value: str) -> Markup:
    good = value in ("passed", "ok", "promoted")
    bad = value in ("failed", "breach")
    return tag("span", value, class_="good" if good else "bad" if bad else None)


def _models(models: list[dict[str, Any]]) -> list[Markup]:
    out = []
    for model in models:
        aliases = ", ".join(f"{a} → v{v}" for a, v in sorted(model.get("aliases", {}).items()))
        out.append(tag("h3", f"{model['name']}", " ", tag("small", aliases or "no aliases")))
        if model.get("error"):
            out.append(tag("p", model["error"], class_="bad"))
        rows = []
        for v in model["versions"]:
            unmet = [g["name"] for g in v["gates"] if not g["holds"]]
            gates = "all hold" if not unmet else "unmet: " + ", ".join(unmet)
            rows.append(
                [
                    v["version"],
                    ", ".join(v["aliases"]) or "–",
                    v["created"][:16].replace("T", " "),
                    tag("span", f"run {str(v['run_id'])[:8]}", title=v["run_id"] or ""),
                    v["datasets"] or "–",
                    (v["commit"] or "–")[:10],
                    _status(v["tests"]),
                    tag("span", gates, class_="good" if not unmet else "bad"),
                    _status(v["monitor"]),
                ]
            )
        headers = [
            "version",
            "aliases",
            "created",
            "run",
            "data",
            "commit",
            "tests",
            "gates",
            "monitor",
        ]
        out.append(table(headers, rows, class_="versions", data_model=model["name"]))
    return out


def _rollout(rollout: dict[str, Any]) -> Markup:
    if rollout.get("error"):
        return tag("p", f"{rollout['error']} at {rollout['url']}", class_="meta")
    weights = rollout.get("weights") or {}
    chart = charts.compare_bars(
        list(weights),
        [0.0] * len(weights),
        [w / 100 for w in weights.values()],
        title=f"traffic weights ({rollout.get('mode')}, {rollout.get('state')})",
    )
    variants = (rollout.get("analysis") or {}).get("variants") or {}
    rows = [
        [
            name,
            s.get("requests"),
            number(s.get("error_rate")),
            number(s.get("p99_ms")),
            s.get("labelled"),
            number(s.get("accuracy")),
        ]
        for name, s in variants.items()
    ]
    return tag(
        "div",
        tag(
            "p",
            f"mode {rollout.get('mode')}, state {rollout.get('state')}, canary step "
            f"{rollout.get('step')}",
            class_="meta",
        ),
        tag("div", Markup(chart), class_="card chart-card"),
        table(
            ["variant", "requests", "error rate", "p99 ms", "labelled", "accuracy"],
            rows,
            numeric=(1, 2, 3, 4, 5),
        ),
    )


def _monitor(result: dict[str, Any] | None) -> list[Markup]:
    if result is None:
        return [tag("p", "No monitoring pass yet: run `shipml monitor`.", class_="meta")]
    drift = result["drift"]
    # 5,000 features drew 5,000 bars and a chart per drifted one at every view: minutes
    shown = most_drifted(drift["features"], MAX_CHARTS)
    names = [f["name"] for f in shown]
    stats = [f["test"]["statistic"] if f.get("test") else None for f in shown]
    flagged = [f["name"] for f in drift["features"] if f["drifted"]]
    listed = ", ".join(flagged[:MAX_CHARTS]) + (
        f" and {len(flagged) - MAX_CHARTS} more" if len(flagged) > MAX_CHARTS else ""
    )
    out = [
        tag(
            "p",
            f"{result['model']} version {result['version']}: {result['rows']} rows, "
            f"{result['created'][:16].replace('T', ' ')} · drifted: "
            f"{listed or 'none'}",
            class_="meta",
        ),
    ]
    cards = [
        Markup(
            charts.compare_bars(
                names,
                [0.0] * len(names),
                [s or 0.0 for s in stats],
                title="drift statistic per feature (p-value or distance)"
                + (f", {len(shown)} most drifted" if len(shown) < len(drift["features"]) else ""),
            )
        )
    ]
    for f in shown[:MAX_SERIES]:
        if f["drifted"]:
            cards.append(
                Markup(
                    charts.compare_bars(
                        f["labels"],
                        f["reference_shares"],
                        f["current_shares"],
                        title=f"{f['name']}: drifted",
                    )
                )
            )
    windows = result.get("windows") or []
    metrics = sorted({m for w in windows for m in w.get("quality", {})})
    if windows and metrics:
        x = [
            str(w.get("start") or w.get("first") or i)[:16].replace("T", " ")
            for i, w in enumerate(windows)
        ]
        series = {m: [w["quality"].get(m) for w in windows] for m in metrics}
        cards.append(Markup(charts.lines(x, series, title="quality over time (feedback labels)")))
    out.append(tag("div", *(tag("div", c, class_="card chart-card") for c in cards), class_="grid"))
    return out


def _cell(value: Any) -> str:
    return "" if value is None else charts.short(value, CELL)


def _predictions(predictions: dict[str, Any]) -> Markup:
    if predictions.get("error"):
        return tag("p", predictions["error"], class_="meta")
    verified = predictions.get("verified") or {}
    state = (
        tag(
            "span",
            f"verified: {verified.get('records')} records, hash chain and checkpoints hold",
            class_="good",
        )
        if verified.get("ok")
        else tag("span", f"verification FAILED: {verified.get('problem')}", class_="bad")
    )
    # A request id is the client's header, a label a whole batch's: cut for the table
    # (the JSON keeps them whole), or 20 rows could make a page of megabytes.
    rows = [
        [
            r["seq"],
            r["time"].replace("T", " "),
            *(_cell(r[k]) for k in ("request_id", "model", "variant", "label")),
            number(r["latency_ms"]),
        ]
        for r in predictions["rows"]
    ]
    return tag(
        "div",
        tag("p", "audit log ", state, id="audit-status"),
        table(
            ["seq", "time", "request id", "model", "variant", "label", "ms"],
            rows,
            numeric=(0, 6),
            id="predictions",
        ),
    )


def render(data: dict[str, Any]) -> str:
    html = page(
        f"{data['project']}: models in production",
        tag("h2", "Models, versions and aliases"),
        *_models(data["models"]),
        tag("h2", "Rollout"),
        _rollout(data["rollout"]),
        tag("h2", "Drift and quality"),
        *_monitor(data["monitor"]),
        tag("h2", "Recent predictions"),
        _predictions(data["predictions"]),
        subtitle=f"as of {data['time']} · refreshed every 30 s",
        footer="shipml dashboard · docs/monitoring.md",
    )
    return html.replace("<head>", '<head><meta http-equiv="refresh" content="30">', 1)


COOKIE = "shipml_dashboard"
PAGES = ("/", "/api/overview")


def needs_token(host: str) -> bool:
    """Whether a dashboard on ``host`` is reachable from other machines: it shows recent
    predictions (their inputs may be personal data), so only with a token."""
    return not is_loopback(host)


_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,200}")


def token_for(host: str, given: str | None) -> tuple[str | None, bool]:
    """The dashboard's token and whether it was made here (to be shown once): the one
    ``given`` (``SHIPML_DASHBOARD_TOKEN``), else a new one where ``needs_token(host)``,
    else none."""
    if given:
        if not _TOKEN.fullmatch(given):
            raise ConfigError(
                f"SHIPML_DASHBOARD_TOKEN must be 16 to 200 letters, digits or ._~- "
                f"(it has {len(given)} characters, or others)",
                hint="make one with `python -c 'import secrets; print(secrets.token_urlsafe())'`",
            )
        return given, False
    if needs_token(host):
        return secrets.token_urlsafe(24), True
    return None, False


class Dashboard:
    """ASGI app over ``gather`` (a callable returning the overview dict). With a
    ``token``, every page but ``/healthz`` needs it: ``Authorization: Bearer TOKEN``, or
    once ``?token=TOKEN`` in a browser, which then keeps it in a cookie (HttpOnly,
    SameSite=Strict) and is sent on to the page without it in the address."""

    def __init__(
        self,
        gather: Callable[[], dict[str, Any]],
        token: str | None = None,
        allowed_hosts: Iterable[str] = (),  # [http] allowed_hosts, as every shipml server
    ) -> None:
        self.gather = gather
        self.token = token
        self.loopback = LoopbackHosts(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD"):
            await _send(send, 405, b"only GET", b"text/plain")
        elif path == "/healthz":
            await _send(send, 200, b"ok", b"text/plain")
        elif self.token is None and not self.loopback.admits(
            dict(scope.get("headers") or []).get(b"host")
        ):
            # DNS rebinding: a site whose name turns into 127.0.0.1 would read the page
            # (same origin for the browser) without a token; its name is in Host.
            text = b"this dashboard answers to localhost and loopback addresses only"
            await _send(send, 403, text, b"text/plain")
        elif self.token is not None and not await self._admitted(scope, send):
            return
        elif path in PAGES:
            try:  # off the event loop: verifying a large audit log takes seconds
                body, ctype = await asyncio.to_thread(self._page, path)
            except Exception as exc:  # a broken store must not take the page down with a trace
                log.exception("the dashboard could not gather the overview")
                message = f"cannot gather the overview: {type(exc).__name__}"
                await _send(send, 500, message.encode(), b"text/plain")
                return
            await _send(send, 200, body, ctype)
        else:
            await _send(send, 404, b"not found", b"text/plain")

    async def _admitted(self, scope: Scope, send: Any) -> bool:
        """Whether the request carries the token; if not, the refusal (or the cookie and
        a redirect for ``?token=``) is sent."""
        assert self.token is not None
        want = self.token.encode()
        headers = dict(scope.get("headers") or [])
        bearer = headers.get(b"authorization", b"")
        cookies = http.cookies.SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        cookie = cookies[COOKIE].value.encode() if COOKIE in cookies else b""
        if hmac.compare_digest(bearer, b"Bearer " + want) or hmac.compare_digest(cookie, want):
            return True
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (query.get("token") or [""])[0].encode()
        if given and hmac.compare_digest(given, want):
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            # never the path as asked: "//elsewhere.example/?token=..." is another site
            back = scope["path"] if scope["path"] in PAGES else "/"
            moved = [(b"location", back.encode()), (b"set-cookie", cookie.encode())]
            await _send(send, 303, b"", b"text/plain", moved)
            return False
        text = b"this dashboard needs its token: open the address `shipml dashboard` printed"
        await _send(send, 401, text, b"text/plain", [(b"www-authenticate", b"Bearer")])
        return False

    def _page(self, path: str) -> tuple[bytes, bytes]:
        data = self.gather()
        if path == "/":
            return render(data).encode(), b"text/html; charset=utf-8"
        text = json.dumps(finite_json(data), default=str, allow_nan=False)  # NaN is null
        return text.encode(), b"application/json"


# On every answer. The page's own <meta> policy cannot say frame-ancestors: without
# the header, any site could frame the token-holder's dashboard (clickjacking) and a
# shared proxy or browser cache could keep its predictions.
HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", f"{CSP}; frame-ancestors 'none'".encode()),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
)


async def _send(
    send: Any, status: int, body: bytes, ctype: bytes, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype),
                (b"content-length", str(len(body)).encode()),
                *HEADERS,
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
