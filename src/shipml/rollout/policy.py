"""The traffic policy of the gateway: which model servers, and how requests split."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shipml.errors import ConfigError

MODES = ("single", "shadow", "ab", "canary")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass
class Variant:
    """A model behind the gateway: a remote `shipml serve` (``url``), or a model server
    hosted inside the gateway process (``app``: no network hop on its path)."""

    name: str
    url: str = ""  # base URL of a `shipml serve`
    ref: str = ""  # registry reference it serves (name/version), for promotion
    app: Any = field(default=None, repr=False)  # an in-process ModelServer
    name_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ConfigError(
                f"invalid variant name {self.name[:80]!r}",
                hint="use 1 to 64 letters, digits, '_', '-' or '.'",
            )
        self.name_bytes = self.name.encode("ascii")

    @property
    def where(self) -> str:
        return self.url or f"in process ({self.ref or 'package'})"


@dataclass
class TrafficPolicy:
    mode: str
    champion: Variant
    challengers: list[Variant] = field(default_factory=list)
    # shadow: fraction of requests mirrored to every challenger (0..1)
    shadow_fraction: float = 1.0
    # ab: weight per variant name (champion included); canary: weights come from steps
    weights: dict[str, float] = field(default_factory=dict)
    # "header:x-user-id" or "field:customer_id"; none means random assignment
    sticky: str | None = None
    # canary: challenger weight (%) per step, and the analysis between steps
    steps: list[float] = field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    min_samples: int = 200  # labelled predictions per variant before a quality decision
    min_requests: int = 50  # requests per variant before an error/latency decision
    max_error_rate: float = 0.02
    max_p99_ms: float = 250.0
    alpha: float = 0.05  # significance level of "the challenger is worse"
    interval_s: float = 5.0
    timeout_s: float = 2.0  # upstream timeout (shadow and primary)
    queue_size: int = 1000  # mirrored requests waiting; beyond it they are dropped

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"unknown traffic mode {self.mode!r}", hint=f"use one of: {', '.join(MODES)}"
            )
        if self.mode != "single" and not self.challengers:
            raise ConfigError(
                f"mode {self.mode!r} needs at least one challenger",
                hint="give --challenger NAME=URL",
            )
        if not 0.0 <= self.shadow_fraction <= 1.0:
            raise ConfigError(
                f"shadow fraction must be between 0 and 1, got {self.shadow_fraction}"
            )
        if self.sticky and not self.sticky.startswith(("header:", "field:")):
            raise ConfigError(
                f"invalid sticky key {self.sticky!r}", hint="write header:NAME or field:NAME"
            )
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ConfigError(f"variant names must differ, got {names}")
        unknown = sorted(set(self.weights) - set(names))
        if unknown:
            raise ConfigError(
                f"weights name unknown variants {unknown}",
                hint=f"the variants are {', '.join(names)}",
            )
        if self.mode == "canary" and (
            not self.steps
            or any(not 0 < s <= 100 for s in self.steps)
            or self.steps != sorted(self.steps)
        ):
            raise ConfigError(
                f"canary steps must be increasing percentages in (0, 100], got {self.steps}",
                hint="for example 5,25,50,100",
            )
        if self.min_samples < 1 or self.interval_s <= 0:
            raise ConfigError("min_samples must be at least 1 and interval above 0")
        if self.mode == "ab" and not self.weights:
            share = 100.0 / (1 + len(self.challengers))
            self.weights = {v.name: share for v in [self.champion, *self.challengers]}

    @property
    def variants(self) -> list[Variant]:
        return [self.champion, *self.challengers]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)
