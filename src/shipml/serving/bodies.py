"""Request bodies: each read whole within ``max_body_bytes`` (413 beyond, from its
Content-Length before a byte is read, or as it streams in), and all of them together,
read or being scored, within ``max_buffered_bytes`` (503 beyond): clients holding
nearly-sent bodies over many connections cannot fill the server's memory. A gRPC message
counts from the moment it arrives (``reserve``), before it is parsed and becomes a body."""

from __future__ import annotations

from typing import Any

from shipml.errors import InvalidRequest, PayloadTooLarge, ServerBusy
from shipml.serving.validation import shorten

HINT = "send fewer rows per request, or raise [serving] max_body_bytes"


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is no one to answer."""


class Bodies:
    def __init__(self, max_body_bytes: int, max_buffered_bytes: int = 0) -> None:
        self.limit = max_body_bytes
        # 0: 8 bodies at the limit; never below one body at the limit
        self.cap = max(max_buffered_bytes or 8 * max_body_bytes, max_body_bytes)
        self.held = 0  # bytes of the bodies being read or scored

    async def read(self, receive: Any, declared: bytes | None, mine: list[int]) -> bytes:
        """The whole body. Every byte read is added to ``mine[0]`` and to ``held``: the
        caller takes ``mine[0]`` off ``held`` once it is done with the body. A body that
        fits alone is never refused while no other is held."""
        limit = self.limit
        if declared is not None:
            if not declared.isdigit():
                text = shorten(declared.decode("latin-1"))
                raise InvalidRequest(f"invalid Content-Length {text}")
            if len(declared) > 19 or int(declared) > limit:
                digits = declared[:40].decode() + ("..." if len(declared) > 40 else "")
                raise PayloadTooLarge(
                    f"body of {digits} bytes is larger than the limit of {limit}", hint=HINT
                )
            if self.held + int(declared) > self.cap and self.held > mine[0]:
                raise self.busy()
        chunks: list[bytes] = []
        got = 0  # this body's bytes (``mine[0]`` may count more: Bodies.reserve)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size = len(chunk)
            if got + size > limit:
                raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes", hint=HINT)
            if self.held + size > self.cap and self.held > mine[0]:
                raise self.busy()
            got += size
            mine[0] += size
            self.held += size
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def reserve(self, size: int) -> list[int]:
        """Count ``size`` bytes held before they are a body: a gRPC message, which the gRPC
        library reads whole before the app sees it. Refused as ``read`` refuses a body;
        returns the count to pass on as ``read``'s ``mine`` (``release`` ends it)."""
        if self.held + size > self.cap and self.held:
            raise self.busy()
        self.held += size
        return [size]

    def release(self, mine: list[int]) -> None:
        """Take ``mine[0]`` off ``held`` (once: a second release takes nothing)."""
        self.held -= mine[0]
        mine[0] = 0

    def busy(self) -> ServerBusy:
        return ServerBusy(
            f"the server holds {self.held} bytes of request bodies; with this one it would "
            f"pass [serving] max_buffered_bytes ({self.cap})",
            hint="retry shortly, or raise [serving] max_buffered_bytes",
        )
