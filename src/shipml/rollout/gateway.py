"""The gateway: one address in front of model servers, with shadow, A/B and canary
traffic, feedback labels, online analysis and automatic promotion or rollback.

It speaks the model server's protocols (V2, /invocations, /predict) and forwards each
request to the variant the policy picks, adding ``X-Shipml-Variant`` so the model
server's audit record says which arm served it. Lifecycle events (start, traffic
change, promotion, rollback) go into the audit log with the numbers behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import random
import time
import uuid
from typing import Any
from urllib.parse import unquote

import aiohttp
import orjson

from shipml.audit import AuditLog
from shipml.errors import AuditError
from shipml.rollout.analysis import Analysis
from shipml.rollout.assignment import choose
from shipml.rollout.policy import TrafficPolicy

log = logging.getLogger("shipml.rollout")
JSON = b"application/json"
INFER_PATHS = ("/predict", "/invocations")


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def outputs_of(path: str, body: Any) -> dict[str, Any]:
    """The first row's label and probabilities from a model server's answer."""
    try:
        if path.startswith("/v2/"):
            outs = {o["name"]: o for o in body["outputs"]}
            label = outs["label"]["data"][0] if "label" in outs else None
            proba = outs.get("probabilities")
            n = proba["shape"][-1] if proba else 0
            return {"label": label, "probabilities": proba["data"][:n] if proba else None}
        first = body["predictions"][0]
        if isinstance(first, dict):
            probs = first.get("probabilities")
            return {
                "label": first.get("label"),
                "probabilities": (list(probs.values()) if isinstance(probs, dict) else probs),
            }
        probs = body.get("probabilities")
        return {"label": first, "probabilities": probs[0] if probs else None}
    except (KeyError, IndexError, TypeError):
        return {"label": None, "probabilities": None}


class Gateway:
    def __init__(
        self,
        policy: TrafficPolicy,
        *,
        audit: AuditLog | None = None,
        admin_token: str = "",
        seed: int | None = None,
        on_promote: Any = None,
        tracing: Any = None,
    ) -> None:
        self.policy = policy
        # shipml.serving.tracing.Tracing, given by whoever builds the gateway (None: off).
        self.tracing = tracing
        # Called with the promoted variant's registry reference (name/version), if known.
        self.on_promote = on_promote
        self.audit = audit
        self.admin_token = admin_token
        self.rng = random.Random(seed)
        self.analysis = Analysis()
        self.step = 0  # canary: index into policy.steps
        self.state = "running"  # running | promoted | rolled back
        self.history: list[dict[str, Any]] = []
        self.counters: dict[str, int] = {
            "mirrored": 0,
            "dropped": 0,
            "shadow_failed": 0,
            "skipped_circuit_open": 0,
        }
        # Per shadow: consecutive failures and, while its circuit is open, until when.
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self.requests: dict[tuple[str, int], int] = {}
        self._session: aiohttp.ClientSession | None = None
        self._queue: (
            asyncio.Queue[tuple[str, bytes, list[tuple[bytes, bytes]], str, dict[str, Any]]] | None
        )
        self._queue = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:12]

    # -- traffic ------------------------------------------------------------------------
    def weights(self) -> list[tuple[str, float]]:
        p = self.policy
        if p.mode == "ab":
            return [(v.name, p.weights.get(v.name, 0.0)) for v in p.variants]
        if p.mode == "canary" and self.state == "running":
            share = p.steps[self.step]
            return [(p.champion.name, 100.0 - share), (p.challengers[0].name, share)]
        return [(p.champion.name, 100.0)]

    def _sticky_key(self, headers: dict[bytes, bytes], body: bytes) -> str | None:
        sticky = self.policy.sticky
        if not sticky:
            return None
        kind, _, name = sticky.partition(":")
        if kind == "header":
            value = headers.get(name.lower().encode())
            return value.decode("latin-1") if value is not None else None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if isinstance(data, dict):
            for key in ("instances", "dataframe_records"):
                rows = data.get(key)
                if isinstance(rows, list) and rows and isinstance(rows[0], dict):
                    value = rows[0].get(name)
                    return None if value is None else str(value)
            for tensor in data.get("inputs") or []:
                if isinstance(tensor, dict) and tensor.get("name") == name and tensor.get("data"):
                    return str(tensor["data"][0])
        return None

    # -- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id") or f"{self._prefix}-{next(self._ids)}".encode()
        if method == "POST" and (path in INFER_PATHS or path.startswith("/v2/models/")):
            body = await _read(receive)
            await self._forward(path, body, headers, rid, send)
        elif method == "POST" and path == "/v1/feedback":
            await self._feedback(await _read(receive), rid, send)
        elif method == "POST" and path in ("/v1/rollout/promote", "/v1/rollout/rollback"):
            await _read(receive)
            await self._admin(path.rsplit("/", 1)[1], headers, rid, send)
        elif method == "GET" and path == "/v1/rollout":
            await _send(send, 200, _json(self.status()), rid)
        elif method == "GET" and path == "/metrics":
            await _send(send, 200, self.metrics().encode(), rid, b"text/plain; version=0.0.4")
        elif method == "GET" and path in ("/v2/health/live", "/v2/health/ready"):
            await _send(
                send, 200, b'{"live":true}' if path.endswith("live") else b'{"ready":true}', rid
            )
        else:
            await _send(send, 404, _json({"error": f"no such endpoint: {method} {path}"}), rid)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        for variant in self.policy.variants:
            if variant.app is not None and not variant.app.ready:
                variant.app.warm_up()
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
        )
        if self.policy.mode == "shadow":
            self._queue = asyncio.Queue(maxsize=self.policy.queue_size)
            self._tasks += [asyncio.create_task(self._shadow_worker()) for _ in range(4)]
        if self.policy.mode == "canary":
            self._tasks.append(asyncio.create_task(self._canary_loop()))
        self.event(
            "start",
            mode=self.policy.mode,
            weights=dict(self.weights()),
            variants={v.name: v.where for v in self.policy.variants},
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
        if self.audit is not None:
            self.audit.close()

    async def _forward(
        self, path: str, body: bytes, headers: dict[bytes, bytes], rid: bytes, send: Any
    ) -> None:
        single = self.policy.mode == "single"
        if single:  # the fast path: everything to the champion
            variant = self.policy.champion
            name = variant.name
        else:
            name = choose(self.weights(), self._sticky_key(headers, body), self.rng)
            variant = self.policy.variant(name)
        raw_headers = [
            (b"content-type", JSON),
            (b"x-request-id", rid),
            (b"x-shipml-variant", variant.name_bytes),
        ]
        trace = headers.get(b"traceparent")
        started = time.perf_counter()
        tracing = self.tracing
        if tracing is not None and tracing.enabled:
            with tracing.client_span(f"gateway {name}", _text(list(headers.items())), rid.decode()):
                trace = tracing.inject() or trace
                status, answer = await self._call(variant, path, body, raw_headers, trace)
        else:
            status, answer = await self._call(variant, path, body, raw_headers, trace)
        seconds = time.perf_counter() - started
        self.requests[(name, status)] = self.requests.get((name, status), 0) + 1
        parsed: dict[str, Any] | None = None
        if status == 200 and not single:
            try:
                parsed = outputs_of(path, orjson.loads(answer))
            except orjson.JSONDecodeError:
                parsed = None
        rid_text = rid.decode("latin-1")
        self.analysis.record(
            name, seconds, status < 400, rid_text, parsed["label"] if parsed else None
        )
        await _send(send, status, answer, rid, extra=[(b"x-shipml-variant", variant.name_bytes)])
        if self.policy.mode == "shadow" and status == 200 and parsed is not None:
            self._mirror(path, body, raw_headers, rid_text, parsed)

    async def _call(
        self, variant: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]], trace: Any
    ) -> tuple[int, bytes]:
        if trace:
            headers = [*headers, (b"traceparent", trace)]
        if variant.app is not None:
            return await _call_app(variant.app, path, body, headers)
        return await self._post(variant.url + path, body, _text(headers))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self._session is not None
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 502, _json(
                {"error": f"model server {url} did not answer: {type(exc).__name__}: {exc}"}
            )

    # -- shadow -------------------------------------------------------------------------
    def _mirror(
        self,
        path: str,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        rid: str,
        primary: dict[str, Any],
    ) -> None:
        if self.rng.random() >= self.policy.shadow_fraction or self._queue is None:
            return
        try:
            self._queue.put_nowait((path, body, headers, rid, primary))
            self.counters["mirrored"] += 1
        except asyncio.QueueFull:
            self.counters["dropped"] += 1

    async def _shadow_worker(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                await self._shadow_one(*item)
            except Exception:  # a bug must not silently stop mirroring for good
                self.counters["shadow_failed"] += 1
                log.exception("shadow mirroring failed")

    async def _shadow_one(
        self,
        path: str,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        rid: str,
        primary: dict[str, Any],
    ) -> None:
        for shadow in self.policy.challengers:
            if time.monotonic() < self._open_until.get(shadow.name, 0.0):
                self.counters["skipped_circuit_open"] += 1  # a dead shadow costs nothing
                continue
            started = time.perf_counter()
            shadow_headers = [h for h in headers if h[0] != b"x-shipml-variant"]
            shadow_headers.append((b"x-shipml-variant", shadow.name_bytes))
            if shadow.app is not None:
                status, answer = await _call_app(shadow.app, path, body, shadow_headers)
            else:
                status, answer = await self._post(shadow.url + path, body, _text(shadow_headers))
            seconds = time.perf_counter() - started
            if status != 200:
                self.counters["shadow_failed"] += 1
                self.analysis.record(shadow.name, seconds, False, None)
                self._shadow_failed(shadow.name)
                continue
            self._failures[shadow.name] = 0
            self.analysis.record(shadow.name, seconds, True, None)
            try:
                out = outputs_of(path, orjson.loads(answer))
            except orjson.JSONDecodeError:
                continue
            self.analysis.compare(shadow.name, primary, out, rid)

    def _shadow_failed(self, name: str, threshold: int = 5) -> None:
        """Circuit breaker: after ``threshold`` failures in a row, stop calling the shadow
        for 1 s, doubling up to 30 s while it keeps failing."""
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        if failures >= threshold:
            pause = min(30.0, 2.0 ** (failures - threshold))
            self._open_until[name] = time.monotonic() + pause

    # -- feedback, status, admin ---------------------------------------------------------
    async def _feedback(self, raw: bytes, rid: bytes, send: Any) -> None:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await _send(send, 400, _json({"error": f"malformed JSON: {exc}"}), rid)
            return
        items = data if isinstance(data, list) else [data]
        if not items or not all(
            isinstance(i, dict) and "request_id" in i and "label" in i for i in items
        ):
            await _send(
                send,
                400,
                _json({"error": 'expected {"request_id": ..., "label": ...} or a list of them'}),
                rid,
            )
            return
        refused = _unloggable(items)
        if refused:
            await _send(send, 400, _json({"error": refused}), rid)
            return
        matched = sum(self.analysis.feedback(str(i["request_id"]), i["label"]) for i in items)
        recorded = await self._record_feedback(items)
        answer = {"received": len(items), "matched": matched, "recorded": recorded}
        await _send(send, 200, _json(answer), rid)

    async def _record_feedback(self, items: list[dict[str, Any]]) -> int:
        """Each label into the audit log, where the monitor joins it to its prediction
        (quality from feedback); one group commit for the lot."""
        if self.audit is None:
            return 0
        records = [
            {"kind": "feedback", "request_id": str(i["request_id"]), "label": i["label"]}
            for i in items
        ]
        try:
            await asyncio.gather(*(self.audit.append_async(r) for r in records))
        except AuditError as exc:
            log.error("feedback labels were not written to the audit log: %s", exc.message)
            return 0
        return len(records)

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.policy.mode,
            "state": self.state,
            "champion": self.policy.champion.name,
            "challengers": [v.name for v in self.policy.challengers],
            "weights": dict(self.weights()),
            "step": self.step if self.policy.mode == "canary" else None,
            "shadow": dict(self.counters) if self.policy.mode == "shadow" else None,
            "analysis": self.analysis.report(self.policy.champion.name),
            "history": self.history,
        }

    async def _admin(self, action: str, headers: dict[bytes, bytes], rid: bytes, send: Any) -> None:
        given = headers.get(b"authorization", b"").decode("latin-1").removeprefix("Bearer ")
        if not self.admin_token:
            await _send(
                send,
                403,
                _json(
                    {
                        "error": "admin endpoints are off: no admin token "
                        "configured ([rollout] admin_token)"
                    }
                ),
                rid,
            )
            return
        if not hmac.compare_digest(given, self.admin_token):
            await _send(
                send,
                401,
                _json({"error": "a valid admin token is required (Authorization: Bearer TOKEN)"}),
                rid,
            )
            return
        if not self.policy.challengers:
            await _send(
                send,
                409,
                _json({"error": f"nothing to {action}: the gateway has only a champion"}),
                rid,
            )
            return
        if action == "promote":
            refusal = self.promotion_gate()
            force = unquote(headers.get(b"x-shipml-force", b"").decode("latin-1"))
            if refusal and not force:
                await _send(
                    send,
                    409,
                    _json(
                        {
                            "error": f"promotion refused: {refusal} (send "
                            "X-Shipml-Force: REASON to override)"
                        }
                    ),
                    rid,
                )
                return
            if refusal:
                self.event("manual override", reason=force, refused_because=refusal)
            self.promote("manual" + (f" override: {force}" if refusal else ""))
        else:
            self.rollback("manual")
        await _send(send, 200, _json(self.status()), rid)

    def promotion_gate(self, tolerance: float = 0.005) -> str | None:
        """Until shipml's promotion gates land: a challenger with enough labels must not be
        less accurate than the champion by more than ``tolerance``."""
        if not self.policy.challengers:
            return "there is no challenger"
        champ = self.analysis.stats(self.policy.champion.name)
        chall = self.analysis.stats(self.policy.challengers[0].name)
        if chall.labelled < self.policy.min_samples:
            return (
                f"the challenger has {chall.labelled} labelled predictions; "
                f"{self.policy.min_samples} are needed"
            )
        acc_c, acc_b = chall.accuracy() or 0.0, champ.accuracy() or 0.0
        if acc_c < acc_b - tolerance:
            return f"challenger accuracy {acc_c:.3f} < champion {acc_b:.3f} - {tolerance}"
        return None

    # -- canary -------------------------------------------------------------------------
    async def _canary_loop(self) -> None:
        while self.state == "running":
            await asyncio.sleep(self.policy.interval_s)
            try:
                self.decide()
            except Exception:  # keep analysing: one bad tick must not freeze the canary
                log.exception("canary analysis failed; trying again next interval")

    def decide(self) -> str:
        """One analysis between canary steps: wait, advance, promote or roll back."""
        if self.state != "running" or self.policy.mode != "canary":
            return self.state
        p = self.policy
        champ = self.analysis.stats(p.champion.name)
        chall_name = p.challengers[0].name
        chall = self.analysis.stats(chall_name)
        report = self.analysis.report(p.champion.name)
        numbers = {
            "step": self.step,
            "weight": p.steps[self.step],
            "champion": report["variants"].get(p.champion.name),
            "challenger": report["variants"].get(chall_name),
        }
        if chall.requests >= p.min_requests:
            if chall.error_rate() > p.max_error_rate:
                self.rollback(
                    f"error rate {chall.error_rate():.2%} > {p.max_error_rate:.2%}", numbers
                )
                return self.state
            p99 = chall.p99_ms()
            if p99 is not None and p99 > p.max_p99_ms:
                self.rollback(f"p99 {p99:.1f} ms > {p.max_p99_ms} ms", numbers)
                return self.state
        if chall.labelled < p.min_samples or champ.labelled < p.min_samples:
            return "waiting"
        acc_c, acc_b = chall.accuracy() or 0.0, champ.accuracy() or 0.0
        p_value = (
            numbers["challenger"].get("p_value_vs_champion", 1.0) if numbers["challenger"] else 1.0
        )
        if acc_c < acc_b and p_value < p.alpha:
            self.rollback(
                f"accuracy {acc_c:.3f} vs champion {acc_b:.3f}, p = {p_value:.2g} < {p.alpha}",
                numbers,
            )
            return self.state
        if self.step + 1 < len(p.steps):
            self.step += 1
            self.event(
                "traffic",
                reason=f"step passed: accuracy {acc_c:.3f} vs {acc_b:.3f} (p = {p_value:.2g})",
                weights=dict(self.weights()),
                numbers=numbers,
            )
            return "advanced"
        self.promote(
            f"all steps passed: accuracy {acc_c:.3f} vs {acc_b:.3f} (p = {p_value:.2g})", numbers
        )
        return self.state

    def promote(self, reason: str, numbers: dict[str, Any] | None = None) -> None:
        old, new = self.policy.champion, self.policy.challengers[0]
        self.policy.champion, self.policy.challengers = new, [old, *self.policy.challengers[1:]]
        self.policy.mode, self.state = "single", "promoted"
        registry = None
        if self.on_promote is not None and new.ref:
            try:
                registry = self.on_promote(new.ref)
            except Exception as exc:  # the registry may be unreachable; the switch stands
                registry = f"not updated: {type(exc).__name__}: {exc}"
        self.event(
            "promotion",
            reason=reason,
            champion=new.name,
            previous=old.name,
            ref=new.ref,
            registry=registry,
            numbers=numbers,
        )

    def rollback(self, reason: str, numbers: dict[str, Any] | None = None) -> None:
        registry = None
        if self.state == "promoted":  # undo the promotion: the previous champion returns
            new, old = self.policy.champion, self.policy.challengers[0]
            self.policy.champion, self.policy.challengers = old, [new, *self.policy.challengers[1:]]
            if self.on_promote is not None and old.ref:
                try:
                    registry = self.on_promote(old.ref)
                except Exception as exc:
                    registry = f"not updated: {type(exc).__name__}: {exc}"
        self.policy.mode, self.state = "single", "rolled back"
        self.event(
            "rollback",
            reason=reason,
            champion=self.policy.champion.name,
            challenger=self.policy.challengers[0].name,
            registry=registry,
            numbers=numbers,
        )

    def event(self, event: str, **details: Any) -> None:
        entry = {"event": event, **details}
        self.history.append({**entry, "at": time.time()})
        log.warning("rollout %s: %s", event, details.get("reason", ""))
        if self.audit is not None:
            try:
                self.audit.append({"kind": "event", **entry})
            except AuditError as exc:  # the traffic decision stands; say loudly it is unlogged
                self.history[-1]["audit"] = f"not recorded: {exc.message}"
                log.error("rollout %s was not written to the audit log: %s", event, exc.message)

    def metrics(self) -> str:
        lines = ["# TYPE shipml_gateway_requests_total counter"]
        for (variant, code), n in sorted(self.requests.items()):
            lines.append(f'shipml_gateway_requests_total{{variant="{variant}",code="{code}"}} {n}')
        lines.append("# TYPE shipml_gateway_shadow_total counter")
        for outcome, n in sorted(self.counters.items()):
            lines.append(f'shipml_gateway_shadow_total{{outcome="{outcome}"}} {n}')
        lines.append("# TYPE shipml_gateway_weight gauge")
        for variant, w in self.weights():
            lines.append(f'shipml_gateway_weight{{variant="{variant}"}} {w}')
        return "\n".join(lines) + "\n"


MAX_FEEDBACK = 10_000  # labels per request
MAX_ID = 200  # characters of a request id


def _unloggable(items: list[dict[str, Any]]) -> str | None:
    """Why these labels cannot be recorded (too many, an id or label of the wrong kind),
    or None: a label is a string, number or boolean, or a list of them (one per row)."""
    if len(items) > MAX_FEEDBACK:
        return f"{len(items)} labels in one request; send at most {MAX_FEEDBACK}"
    for item in items:
        rid, label = item["request_id"], item["label"]
        if not isinstance(rid, str | int) or len(str(rid)) > MAX_ID:
            return (
                f"request_id must be a string of at most {MAX_ID} characters, got {str(rid)[:40]!r}"
            )
        values = label if isinstance(label, list) else [label]
        if len(values) > MAX_FEEDBACK or not all(
            isinstance(v, str | int | float | bool) and len(str(v)) <= MAX_ID for v in values
        ):
            return (
                f"label of {str(rid)[:40]!r} must be a string, number or boolean "
                "(or a list of them)"
            )
    return None


def _text(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}


async def _call_app(
    app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes]:
    """A request to a model server hosted in this process: plain ASGI, no socket."""
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"]), b"".join(m.get("body", b"") for m in sent[1:])


async def _read(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(
    send: Any,
    status: int,
    body: bytes,
    rid: bytes,
    ctype: bytes = JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
