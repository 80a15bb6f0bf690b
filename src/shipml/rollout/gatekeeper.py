"""The gateway's link to the promotion rule: before a canary goes on, and before any
promotion, the gatekeeper says whether the challenger's *offline* gates hold, and it is
the one that moves the registry's ``champion``.

The project's gatekeeper (``shipml.project.rollout.ProjectGates``) calls the one
promotion function (``shipml.project.promotion``). ``Closed`` — the default — holds every
canary: without a project there are no ``[gates]`` to check. ``Rehearsal`` lets a canary
run and moves no alias (``shipml test``'s rehearsal).
"""

from __future__ import annotations

from typing import Protocol

from shipml.rollout.policy import Variant


class Gatekeeper(Protocol):
    def check(self, variant: Variant) -> str | None:
        """None when the variant's offline gates hold; otherwise why they do not."""

    def promote(self, variant: Variant, *, reason: str, force: bool, by: str) -> str | None:
        """Make ``variant`` the registry's champion (``GateFailed`` to refuse); what moved."""

    def restore(self, variant: Variant, *, replacing: Variant, reason: str, by: str) -> str | None:
        """Undo the promotion of ``replacing``: ``variant`` is champion again; what moved."""


class Closed:
    """No offline gates can be checked here, so none hold: a canary holds at its step,
    and only a forced promotion (``--force --reason``) switches traffic. No alias moves."""

    def __init__(self, reason: str = "no project: there are no [gates] or registry here") -> None:
        self.reason = reason

    def check(self, variant: Variant) -> str | None:
        return f"the offline gates of {variant.name} cannot be checked: {self.reason}"

    def promote(self, variant: Variant, *, reason: str, force: bool, by: str) -> str | None:
        return None

    def restore(self, variant: Variant, *, replacing: Variant, reason: str, by: str) -> str | None:
        return None


class Rehearsal:
    """A rehearsal: the canary runs on its online analysis alone and no alias moves."""

    def check(self, variant: Variant) -> str | None:
        return None

    def promote(self, variant: Variant, *, reason: str, force: bool, by: str) -> str | None:
        return None

    def restore(self, variant: Variant, *, replacing: Variant, reason: str, by: str) -> str | None:
        return None
