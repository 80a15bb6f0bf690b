"""Periods and windows: ``--since 1h``, ``--window 10m`` (or a number of rows), and the
counts of each window as rows stream in.

Time windows are aligned on the epoch (a 10-minute window starts at :00, :10...), so a
row's window is known from its time alone, whatever order rows arrive in.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from shipml.data.drift import Reference, Window
from shipml.data.quality import Quality
from shipml.errors import ConfigError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
MAX_WINDOWS = 500
MAX_PERIOD = timedelta(days=100 * 365)


def parse_period(text: str, what: str = "--since") -> timedelta:
    """``30s``, ``10m``, ``1h``, ``7d``, ``2w`` as a duration (at most ``MAX_PERIOD``)."""
    match = PERIOD.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"{what} expects a duration such as 30m, 1h or 7d, got {str(text)[:40]!r}",
            hint="a positive number and a unit: s, m, h, d or w",
        )
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if seconds > MAX_PERIOD.total_seconds():  # a date that far back overflows
        raise ConfigError(
            f"{what} {str(text)[:40]!r} is longer than {MAX_PERIOD.days // 365} years",
            hint="give a shorter duration, e.g. 30d",
        )
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class WindowSpec:
    """How the period is split: by duration, by a number of rows, or not at all."""

    seconds: float | None = None
    rows: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> WindowSpec:
        if not text:
            return cls()
        text = str(text).strip()
        if text.isdigit():
            if int(text) < 1:
                raise ConfigError("--window in rows must be at least 1", hint="e.g. --window 5000")
            return cls(rows=int(text))
        return cls(seconds=parse_period(text, "--window").total_seconds())

    def describe(self) -> str:
        if self.rows:
            return f"{self.rows} rows"
        if self.seconds:
            return f"{timedelta(seconds=self.seconds)}"
        return "the whole period"


@dataclass
class Slot:
    """One window's counts."""

    key: int
    drift: Window
    quality: Quality
    first: datetime | None = None
    last: datetime | None = None

    def seen(self, when: datetime | None) -> None:
        if when is None:
            return
        self.first = when if self.first is None or when < self.first else self.first
        self.last = when if self.last is None or when > self.last else self.last


@dataclass
class Windows:
    spec: WindowSpec
    reference: Reference
    task: str
    slots: dict[int, Slot] = field(default_factory=dict)
    rows: int = 0

    def slot(self, key: int) -> Slot:
        found = self.slots.get(key)
        if found is None:
            if len(self.slots) >= MAX_WINDOWS:
                raise ConfigError(
                    f"the period splits into more than {MAX_WINDOWS} windows of "
                    f"{self.spec.describe()}",
                    hint="give a larger --window or a shorter --since",
                )
            found = self.slots[key] = Slot(key, Window(self.reference), Quality(self.task))
        return found

    def keys_of(self, n: int, times: list[datetime]) -> np.ndarray:
        """The window of each of ``n`` rows following the ones already counted."""
        if self.spec.rows:
            return (self.rows + np.arange(n)) // self.spec.rows
        if self.spec.seconds and times:
            known = min(n, len(times))  # rows without a time go to window 0
            stamps = np.fromiter((t.timestamp() for t in times[:known]), np.float64, known)
            keys = np.zeros(n, dtype=np.int64)
            keys[:known] = np.floor_divide(stamps, self.spec.seconds)
            return keys
        return np.zeros(n, dtype=np.int64)

    def add(
        self,
        columns: dict[str, Any],
        predictions: list[Any],
        labels: list[Any],
        times: list[datetime],
    ) -> None:
        """Count rows into their windows: each run of rows of the same window is one
        vectorised add (no per-row work but reading the rows' times)."""
        n = len(predictions)
        keys = self.keys_of(n, times)
        cuts = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist(), n] if n else [0]
        for start, end in itertools.pairwise(cuts):
            slot = self.slot(int(keys[start]))
            part = slice(start, end)
            slot.drift.add({k: v[part] for k, v in columns.items()}, predictions[part], end - start)
            if labels:
                slot.quality.add(labels[part], predictions[part])
            for when in (times[start], times[end - 1]) if len(times) >= end else ():
                slot.seen(when)
        self.rows += n

    def ordered(self) -> list[Slot]:
        return [self.slots[k] for k in sorted(self.slots)]

    def start_of(self, slot: Slot) -> datetime | None:
        if self.spec.seconds:
            return datetime.fromtimestamp(slot.key * self.spec.seconds, UTC)
        return slot.first
