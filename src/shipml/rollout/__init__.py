"""Progressive delivery: the gateway (shadow, A/B, canary), online analysis, feedback."""

from shipml.rollout.analysis import Analysis
from shipml.rollout.assignment import choose
from shipml.rollout.gatekeeper import Closed, Gatekeeper, Rehearsal
from shipml.rollout.gateway import Gateway
from shipml.rollout.policy import TrafficPolicy, Variant

__all__ = [
    "Analysis",
    "Closed",
    "Gatekeeper",
    "Gateway",
    "Rehearsal",
    "TrafficPolicy",
    "Variant",
    "choose",
]
