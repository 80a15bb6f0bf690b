"""Who gets the traffic now: the policy's variants, the rollout's state (running,
promoted, rolled back; a canary may be *held* at its step), and every change to it as
an audited event with the numbers behind it.

A promotion moves the registry's ``champion`` only through the gatekeeper (the project's
one promotion function, see ``rollout.canary.Gatekeeper``); if the gatekeeper refuses,
the traffic does not switch either.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from shipml.audit import AuditLog
from shipml.errors import AuditError, GateFailed, ShipmlError
from shipml.rollout.gatekeeper import Closed, Gatekeeper
from shipml.rollout.policy import TrafficPolicy, Variant

log = logging.getLogger("shipml.rollout")
RUNNING, PROMOTED, ROLLED_BACK = "running", "promoted", "rolled back"


class Traffic:
    def __init__(
        self,
        policy: TrafficPolicy,
        *,
        audit: AuditLog | None = None,
        gatekeeper: Gatekeeper | None = None,
    ) -> None:
        self.policy = policy
        self.audit = audit
        self.gatekeeper: Gatekeeper = gatekeeper or Closed()
        self.state = RUNNING
        self.step = 0  # canary: index into policy.steps
        self.held: str | None = None  # canary: why it does not go on, while it does not
        self.history: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # the canary decides on a thread
        # One decision at a time (the canary's, an operator's promotion or rollback), from
        # reading the numbers to moving the registry: a rollback that lands while the
        # gatekeeper is asked must not be undone by the promotion that was being decided.
        self.deciding = threading.RLock()
        self.table: tuple[tuple[tuple[str, float], ...], dict[str, Variant]] = ((), {})
        self.hand_over: Variant | None = None
        self.refresh()

    # -- routing ------------------------------------------------------------------------
    def weights(self) -> list[tuple[str, float]]:
        p = self.policy
        if p.mode == "ab":
            return [(v.name, p.weights.get(v.name, 0.0)) for v in p.variants]
        if p.mode == "canary" and self.state == RUNNING:
            share = p.steps[self.step]
            return [(p.champion.name, 100.0 - share), (p.challengers[0].name, share)]
        return [(p.champion.name, 100.0)]

    def refresh(self) -> None:
        """Publish the routing table in one store: a request reads one consistent view
        while the canary changes it from another thread. ``hand_over``: in single mode, an
        in-process champion, which gets requests unread (the fast path)."""
        self.table = (tuple(self.weights()), {v.name: v for v in self.policy.variants})
        champion = self.policy.champion
        single = self.policy.mode == "single" and champion.app is not None
        self.hand_over = champion if single else None

    @property
    def single(self) -> bool:
        return self.policy.mode == "single"

    # -- changes ------------------------------------------------------------------------
    def advance(self, reason: str, numbers: dict[str, Any]) -> None:
        with self.deciding, self._lock:
            self.step += 1
            self.held = None
            self.refresh()
        self.event("traffic", reason=reason, weights=dict(self.weights()), numbers=numbers)

    def hold(self, reason: str, numbers: dict[str, Any] | None = None) -> None:
        """Stay at this step although the online analysis passed, and say why (an event
        when the reason is new)."""
        if reason != self.held:
            self.held = reason
            self.event("hold", reason=reason, step=self.step, numbers=numbers)

    def promote(
        self,
        reason: str,
        numbers: dict[str, Any] | None = None,
        *,
        by: str,
        force: bool = False,
    ) -> None:
        """Make the first challenger the champion: the registry first (through the
        gatekeeper, which raises ``GateFailed`` to refuse), then the traffic."""
        with self.deciding:
            self._promote(reason, numbers, by=by, force=force)

    def _promote(
        self, reason: str, numbers: dict[str, Any] | None, *, by: str, force: bool
    ) -> None:
        if self.state == PROMOTED:  # a second promotion would bring the old champion back
            raise GateFailed(
                f"{self.policy.champion.name} is the champion already: it was promoted",
                hint="roll back with `shipml rollout rollback`, or start a new rollout",
            )
        old, new = self.policy.champion, self.policy.challengers[0]
        try:
            registry = self.gatekeeper.promote(new, reason=reason, force=force, by=by)
        except GateFailed:
            raise
        except Exception as exc:  # the registry may be unreachable; the switch stands
            registry = f"not updated: {_said(exc)}"
        with self._lock:
            self.policy.champion, self.policy.challengers = new, [old, *self.policy.challengers[1:]]
            self.policy.mode, self.state, self.held = "single", PROMOTED, None
            self.refresh()
        self.event(
            "promotion",
            reason=reason,
            champion=new.name,
            previous=old.name,
            ref=new.ref,
            registry=registry,
            by=by,
            numbers=numbers,
        )

    def rollback(self, reason: str, numbers: dict[str, Any] | None = None, *, by: str) -> None:
        """All traffic to the champion; after a promotion, the previous champion returns
        (and its registry alias, restored through the gatekeeper)."""
        with self.deciding:
            self._rollback(reason, numbers, by=by)

    def _rollback(self, reason: str, numbers: dict[str, Any] | None, *, by: str) -> None:
        registry = None
        with self._lock:
            promoted = self.state == PROMOTED
            if promoted:
                new, old = self.policy.champion, self.policy.challengers[0]
                self.policy.champion = old
                self.policy.challengers = [new, *self.policy.challengers[1:]]
            self.policy.mode, self.state, self.held = "single", ROLLED_BACK, None
            self.refresh()
        if promoted:
            try:
                registry = self.gatekeeper.restore(old, replacing=new, reason=reason, by=by)
            except Exception as exc:  # the traffic is back either way; say what is not
                registry = f"not updated: {_said(exc)}"
        self.event(
            "rollback",
            reason=reason,
            champion=self.policy.champion.name,
            challenger=self.policy.challengers[0].name,
            registry=registry,
            by=by,
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


def _said(exc: Exception) -> str:
    text = exc.message if isinstance(exc, ShipmlError) else str(exc)
    return f"{type(exc).__name__}: {text[:300]}"
