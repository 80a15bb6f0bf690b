"""RFC 6962 Merkle tree hashing (as in Certificate Transparency).

leaf hash = SHA-256(0x00 || entry); node hash = SHA-256(0x01 || left || right); the
root of n leaves splits at the largest power of two below n. ``Frontier`` keeps the
roots of the complete subtrees, so appending a leaf and reading the root cost
O(log n) and the whole tree never has to be held in memory.
"""

from __future__ import annotations

import hashlib

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaves: list[bytes]) -> bytes:
    """The Merkle tree hash of a list of leaf hashes (RFC 6962, section 2.1)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two smaller than n
    return node_hash(root(leaves[:k]), root(leaves[k:]))


class Frontier:
    """Incremental root: the roots of the perfect subtrees covering the leaves so far."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []  # one root per set bit of size, largest first

    def append(self, leaf: bytes) -> None:
        node = leaf
        size = self.size
        while size & 1:  # merge equal-sized perfect subtrees
            node = node_hash(self._stack.pop(), node)
            size >>= 1
        self._stack.append(node)
        self.size += 1

    @classmethod
    def restore(cls, size: int, stack: bytes) -> Frontier:
        """The frontier saved by ``saved()`` (a wrong length is a ValueError)."""
        if size < 0 or len(stack) != 32 * bin(size).count("1"):
            raise ValueError(f"a frontier of {size} leaves has {bin(size).count('1')} hashes")
        frontier = cls()
        frontier.size = size
        frontier._stack = [stack[i : i + 32] for i in range(0, len(stack), 32)]
        return frontier

    def saved(self) -> bytes:
        return b"".join(self._stack)

    def copy(self) -> Frontier:
        frontier = Frontier()
        frontier.size, frontier._stack = self.size, list(self._stack)  # hashes are immutable
        return frontier

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node
