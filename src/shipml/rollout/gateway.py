"""The gateway: one address in front of model servers, with shadow, A/B and canary
traffic, feedback labels, online analysis and promotion or rollback.

It speaks the model server's protocols (V2, /invocations, /predict) and forwards each
request to the variant the policy picks; the model server's audit record says which
variant served it (attested: see ``shipml.attestation``). Lifecycle events (start,
traffic change, hold, promotion, rollback) go into the audit log with the numbers behind
them. The rooms: ``routing`` (reading requests), ``proxy`` (forwarding), ``shadow``,
``canary``, ``traffic`` (state and events), ``feedback``, ``admin`` and ``metrics``.

Every endpoint reads at most ``max_body_bytes`` (413 beyond), answers a malformed
request with a 4xx and a JSON error, and never lets a client choose what is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from typing import Any

import orjson

from shipml.audit import AuditLog
from shipml.errors import AuditError
from shipml.loopback import REFUSAL, LoopbackHosts
from shipml.rollout import admin, feedback, metrics
from shipml.rollout.analysis import Analysis, outcome_of
from shipml.rollout.assignment import choose
from shipml.rollout.canary import Canary
from shipml.rollout.gatekeeper import Gatekeeper
from shipml.rollout.policy import TrafficPolicy, Variant
from shipml.rollout.proxy import Upstream, outputs_of
from shipml.rollout.routing import (
    INFER,
    Refused,
    bearer,
    content_length,
    header_map,
    preview,
    read_body,
    request_id,
    route,
    send_bytes,
    send_json,
    sticky_key,
)
from shipml.rollout.shadow import Shadow
from shipml.rollout.traffic import RUNNING, Traffic

log = logging.getLogger("shipml.rollout")
ADMIN_BODY_BYTES = 64 * 1024
VARIANT = b"x-shipml-variant"


class Gateway:
    def __init__(
        self,
        policy: TrafficPolicy,
        *,
        audit: AuditLog | None = None,
        admin_token: str = "",
        feedback_token: str = "",
        seed: int | None = None,
        gatekeeper: Gatekeeper | None = None,
        max_body_bytes: int = 10 * 1024 * 1024,
        feedback_window_s: float = 86_400.0,
        attestation_key: bytes = b"",
        tracing: Any = None,
        loopback: LoopbackHosts | None = None,  # bound to loopback: shipml/loopback.py
    ) -> None:
        feedback.check_tokens(admin_token=admin_token, feedback_token=feedback_token)
        self.loopback = loopback
        self.admin_token = admin_token
        # serving.tracing.Tracing (None: off); on, every request takes the buffered path.
        self.tracing = tracing if tracing is not None and tracing.enabled else None
        self.feedback_token = feedback_token
        self.max_body_bytes = max_body_bytes
        self.rng = random.Random(seed)
        self.traffic = Traffic(policy, audit=audit, gatekeeper=gatekeeper)
        self._made = 0  # the number of the last id this gateway made (PREFIX-N)
        self._prefix = uuid.uuid4().hex[:12].encode()
        self.analysis = Analysis(feedback_window_s, made_prefix=self._prefix.decode())
        self.upstream = Upstream(policy.timeout_s, attestation_key)
        self.shadow = Shadow(policy, self.upstream, self.analysis, self.rng)
        self.canary = Canary(self.traffic, self.analysis)
        self.requests: dict[tuple[str, int], int] = {}
        self.feedback_counts: Counter[str] = Counter()
        self.started = False
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics = metrics.registry_for(
            metrics.GatewayCollector(
                self.traffic, self.requests, self.shadow.counters, self.feedback_counts
            )
        )

    # -- what the rollout is now (see Traffic) ------------------------------------------
    @property
    def policy(self) -> TrafficPolicy:
        return self.traffic.policy

    @property
    def audit(self) -> AuditLog | None:
        return self.traffic.audit

    @property
    def state(self) -> str:
        return self.traffic.state

    @property
    def step(self) -> int:
        return self.traffic.step

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.traffic.history

    @property
    def counters(self) -> dict[str, int]:
        return self.shadow.counters

    def weights(self) -> list[tuple[str, float]]:
        return self.traffic.weights()

    def decide(self) -> str:
        """One canary analysis (blocking: the gatekeeper may read the registry)."""
        return self.canary.decide()

    def rollback(self, reason: str) -> None:
        self.traffic.rollback(reason, by=admin.BY)

    def status(self) -> dict[str, Any]:
        p, t = self.policy, self.traffic
        return {
            "mode": p.mode,
            "state": t.state,
            "held": t.held,
            "champion": p.champion.name,
            "challengers": [v.name for v in p.challengers],
            "weights": dict(t.weights()),
            "step": t.step if p.mode == "canary" or t.step else None,
            "shadow": dict(self.shadow.counters) if p.mode == "shadow" else None,
            "analysis": self.analysis.report(p.champion.name),
            "feedback": dict(self.feedback_counts),
            "history": t.history,
        }

    def metrics(self) -> str:
        return metrics.render(self._metrics).decode()

    # -- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        rid = b""
        try:
            headers = header_map(scope["headers"])
            if self.loopback is not None and not self.loopback.admits(headers.get(b"host")):
                raise Refused(403, REFUSAL)
            name = route(scope["method"], scope["path"])
            given = self._client_id(headers)
            rid = given or b""  # an error answer names the client's id too
            champion = self.traffic.hand_over
            if name == INFER and champion is not None and self.tracing is None:
                await self._hand_to(champion, scope, headers, given, receive, send)
                return
            rid = given or self._new_id()
            if name == INFER:
                await self._infer(scope["path"], headers, rid, receive, send)
            else:
                await self._other(name, headers, rid, receive, send)
        except Refused as exc:
            await send_bytes(send, exc.status, exc.body(), rid or self._new_id())
        except Exception as exc:  # a bug: a 500 that says so, and the traceback in the log
            log.exception("unexpected error in the gateway")
            body = orjson.dumps({"error": f"internal error: {type(exc).__name__}"})
            await send_bytes(send, 500, body, rid or self._new_id())

    def _new_id(self) -> bytes:
        return self._id_of(self._next())

    def _next(self) -> int:
        self._made += 1
        return self._made

    def _client_id(self, headers: dict[bytes, bytes]) -> bytes | None:
        """The client's valid ``X-Request-ID``, refused if it is, or ends with, an id this
        gateway has not made yet (``PREFIX-N``, ``ID.PREFIX-N``): a client that took one
        first would have a later answer's label join its own prediction."""
        given = request_id(headers)
        if given is None:
            return None
        head, _, digits = given.rpartition(b"-")
        if not digits.isdigit() or not (head == self._prefix or head.endswith(b"." + self._prefix)):
            return given
        if len(digits) <= 18 and int(digits) <= self._made:
            return given  # an id it made and gave: the client may send it again
        raise Refused(
            400,
            f"X-Request-ID {preview(given)} names an answer this gateway has not given yet: "
            f"ids ending in {self._prefix.decode()}-N are the ones it makes",
            hint="send an id of your own, or none",
        )

    def _id_of(self, number: int) -> bytes:
        return b"%s-%d" % (self._prefix, number)

    async def _hand_to(
        self,
        variant: Variant,
        scope: dict[str, Any],
        headers: dict[bytes, bytes],
        rid: bytes | None,
        receive: Any,
        send: Any,
    ) -> None:
        """Single mode, champion in process: the request goes to it unread and unbuffered
        (its body limit is at most the gateway's, see ``start``)."""
        declared = content_length(headers)  # a 400 unless a number
        if declared is not None and declared > self.max_body_bytes:
            await read_body(headers, receive, self.max_body_bytes)  # the gateway's 413
        scope = dict(scope)  # the server's view: the variant, and the id a label will name
        made = None
        if rid is None:
            made = self._next()
            scope["headers"] = [*scope["headers"], (b"x-request-id", self._id_of(made))]
        started = time.perf_counter()
        status = await self.upstream.hand_over(variant, scope, receive, send)
        seconds = time.perf_counter() - started
        key = (variant.name, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        outcome = outcome_of(status)
        if rid is None:  # remembered by number: no string nor dict entry per answer
            self.analysis.record(variant.name, seconds, outcome, made=made)
        else:
            self.analysis.record(variant.name, seconds, outcome, rid.decode("latin-1"))

    async def _infer(
        self, path: str, headers: dict[bytes, bytes], rid: bytes, receive: Any, send: Any
    ) -> None:
        body = await read_body(headers, receive, self.max_body_bytes)
        policy = self.traffic.policy
        single = policy.mode == "single"
        if single:  # the fast path: everything to the champion
            variant = policy.champion
        else:
            weights, by_name = self.traffic.table
            variant = by_name[choose(weights, sticky_key(policy.sticky, headers, body), self.rng)]
            if self.analysis.seen(rid.decode("latin-1")):  # a reused id: a label must name one
                rid = b"%s.%s" % (rid[:100], self._new_id())
        trace = headers.get(b"traceparent")
        started = time.perf_counter()
        if self.tracing is not None:
            text = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
            with self.tracing.client_span(f"gateway {variant.name}", text, rid.decode()):
                trace = self.tracing.inject() or trace
                status, answer = await self.upstream.send(variant, path, body, rid, trace)
        else:
            status, answer = await self.upstream.send(variant, path, body, rid, trace)
        seconds = time.perf_counter() - started
        key = (variant.name, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if single:  # nothing to compare: the analysis counts, times, and awaits a label
            self.analysis.record(variant.name, seconds, outcome_of(status), rid.decode("latin-1"))
            await send_bytes(send, status, answer, rid, extra=[(VARIANT, variant.name_bytes)])
            return
        parsed: dict[str, Any] | None = None
        if status == 200:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = outputs_of(path, orjson.loads(answer))
        label = parsed["label"] if parsed else None
        rid_text = rid.decode("latin-1")
        self.analysis.record(variant.name, seconds, outcome_of(status), rid_text, label)
        await send_bytes(send, status, answer, rid, extra=[(VARIANT, variant.name_bytes)])
        if policy.mode == "shadow" and status == 200 and parsed is not None:
            self.shadow.mirror(path, body, rid, trace, parsed)

    async def _other(
        self, name: str, headers: dict[bytes, bytes], rid: bytes, receive: Any, send: Any
    ) -> None:
        if name == "feedback":
            feedback.authorize(
                bearer(headers),
                [self.feedback_token, self.admin_token],
                "POST /v1/feedback",
                "[rollout] feedback_token",
            )
            pairs = feedback.parse_labels(await read_body(headers, receive, self.max_body_bytes))
            counted, kept = feedback.apply(self.analysis, pairs, self.feedback_counts)
            counted["recorded"] = await self._record_labels(kept)
            await send_json(send, 200, counted, rid)
        elif name in ("promote", "rollback"):
            await self._admin(name, headers, rid, receive, send)
        elif name == "status":
            await send_json(send, 200, self.status(), rid)
        elif name == "metrics":
            await send_bytes(send, 200, metrics.render(self._metrics), rid, metrics.CONTENT_TYPE)
        elif name == "live":
            await send_bytes(send, 200, b'{"live":true}', rid)
        else:
            await send_bytes(send, 200, b'{"ready":true}', rid)

    async def _record_labels(self, labels: list[tuple[str, Any]]) -> int:
        """The labels into the audit log, where the monitor joins each to its prediction
        (quality from feedback); one group commit for the lot."""
        if self.audit is None or not labels:
            return 0
        records = [{"kind": "feedback", "request_id": r, "label": label} for r, label in labels]
        try:
            await asyncio.gather(*(self.audit.append_async(r) for r in records))
        except AuditError as exc:
            log.error("feedback labels were not written to the audit log: %s", exc.message)
            return 0
        return len(records)

    async def _admin(
        self, action: str, headers: dict[bytes, bytes], rid: bytes, receive: Any, send: Any
    ) -> None:
        feedback.authorize(
            bearer(headers),
            [self.admin_token],
            f"POST /v1/rollout/{action}",
            "[rollout] admin_token",
        )
        await read_body(headers, receive, ADMIN_BODY_BYTES)
        if not self.policy.challengers:
            raise Refused(409, f"nothing to {action}: the gateway has only a champion")
        if action == "promote":
            force = admin.forced(headers)
            await asyncio.to_thread(admin.promote, self.traffic, self.analysis, force)
        else:
            await asyncio.to_thread(admin.rollback, self.traffic)
        await send_json(send, 200, self.status(), rid)

    # -- lifespan -----------------------------------------------------------------------
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
            if variant.app is not None:
                if not variant.app.ready:
                    variant.app.warm_up()
                limit = getattr(variant.app, "max_body_bytes", self.max_body_bytes)
                variant.app.max_body_bytes = min(limit, self.max_body_bytes)
        await self.upstream.start()
        if self.policy.mode == "shadow":
            self.shadow.start()
        if self.policy.mode == "canary":
            self._tasks.append(asyncio.create_task(self._canary_loop()))
        self.started = True
        self.traffic.event(
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
        self._tasks = []
        await self.shadow.stop()
        await self.upstream.stop()
        for variant in self.policy.variants:  # in-process servers sign their last checkpoint
            _close_audit(variant)
        if self.audit is not None:
            self.audit.close()
        self.started = False

    async def _canary_loop(self) -> None:
        while self.traffic.state == RUNNING:
            await asyncio.sleep(self.policy.interval_s)
            try:  # on a thread: the gatekeeper may read the registry
                await asyncio.to_thread(self.canary.decide)
            except Exception:  # keep analysing: one bad tick must not freeze the canary
                log.exception("canary analysis failed; trying again next interval")


def _close_audit(variant: Variant) -> None:
    audit = getattr(variant.app, "audit", None)
    if audit is not None:
        audit.close()
