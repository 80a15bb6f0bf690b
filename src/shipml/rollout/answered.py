"""The answers a gateway gave to requests whose id it made itself (``PREFIX-N``, a
request without ``X-Request-ID``), remembered for the label that may come for each.

A ring of the last ``capacity`` numbers: per slot, the number it holds (negative once
labelled) and when it was answered, in two arrays. Recording an answer is two stores,
with no string, tuple or dict entry made per request; the ids clients give are kept by
``Analysis`` in its dict. Keeping them out of the dict (200,000 entries) took the
gateway's cost in front of an in-process champion from 18.1% and 16.2% of the server's
throughput to 12.0% (``benchmarks/gateway.py --duration 3 --rounds 7``, 2026-12-04).

A number that left the ring (``capacity`` newer answers since) is unknown again, as an
entry that left the dict is; an answer older than the feedback window is expired.
"""

from __future__ import annotations

from array import array

MAX_DIGITS = 18  # a number the gateway made fits in 63 bits


class Answered:
    def __init__(self, prefix: str, capacity: int) -> None:
        self.prefix = f"{prefix}-"
        self.capacity = capacity
        self._numbers = array("q", bytes(8 * capacity))  # 0: empty; -N: N labelled
        self._times = array("d", bytes(8 * capacity))

    def add(self, number: int, now: float) -> None:
        """Number ``number`` (≥ 1) was answered at ``now``. A slot that holds a newer
        number keeps it: a slow answer never pushes a later one out."""
        i = number % self.capacity
        if abs(self._numbers[i]) < number:
            self._numbers[i] = number
            self._times[i] = now

    def number_of(self, request_id: str) -> int | None:
        """The number of an id this gateway made (``PREFIX-N``), else None."""
        if not request_id.startswith(self.prefix):
            return None
        digits = request_id[len(self.prefix) :]
        if not (0 < len(digits) <= MAX_DIGITS and digits.isascii() and digits.isdigit()):
            return None
        return int(digits) or None

    def holds(self, request_id: str) -> bool:
        """Whether ``request_id`` names an answer still in the ring (labelled or not)."""
        number = self.number_of(request_id)
        return number is not None and abs(self._numbers[number % self.capacity]) == number

    def label(self, request_id: str) -> tuple[str, float] | None:
        """Take the label of an answer in the ring: ``("pending", answered_at)`` the
        first time (it is then labelled), ``("labelled", ...)`` after; None: not an
        answer of this gateway's, or no longer in the ring."""
        number = self.number_of(request_id)
        if number is None:
            return None
        i = number % self.capacity
        held = self._numbers[i]
        if held == number:
            self._numbers[i] = -number
            return "pending", self._times[i]
        if held == -number:
            return "labelled", self._times[i]
        return None
