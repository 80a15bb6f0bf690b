"""Sticky traffic assignment by consistent hashing.

A key (a user id, say) maps to a bucket in [0, 10000) by SHA-256; variants own
contiguous bucket ranges in proportion to their weights. The same key always lands in
the same variant for the same weights, and raising a challenger's weight (a canary's
5 → 25 → 50 → 100) only moves keys towards it: nobody flips back and forth.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

BUCKETS = 10_000


def bucket(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % BUCKETS


def choose(weights: Sequence[tuple[str, float]], key: str | None, rng: random.Random) -> str:
    """The variant for ``key`` (random when there is no key). Weights need not sum to 100."""
    total = sum(w for _, w in weights)
    if total <= 0:
        return weights[0][0]
    point = bucket(key) if key is not None else rng.randrange(BUCKETS)
    edge = 0.0
    for name, weight in weights:
        edge += weight / total * BUCKETS
        if point < edge:
            return name
    return weights[-1][0]
