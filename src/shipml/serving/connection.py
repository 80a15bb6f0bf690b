"""HTTP connections that cannot be held open: idle, header and body deadlines, and a cap on
the size of a request's head, for every shipml HTTP server (the model server and the gateway).

uvicorn closes a keep-alive connection only after a response; a client that connects and
sends nothing, or half a request, or a body one byte a second, holds its connection (and
its memory) forever. ``GuardedProtocol`` is uvicorn's httptools protocol with deadlines:

- ``idle_timeout_s``: from the connection (or the last response) to a request's first byte;
  the connection is closed silently (it is also uvicorn's keep-alive timeout);
- ``header_timeout_s``: from a request's first byte to the end of its headers; 408;
- ``body_timeout_s``: from the end of the headers to the end of the body; 408;
- ``max_header_bytes``: request line and headers together; 431.

The status is sent only if no response has started; the connection is then closed.

An answer sent before a body the client holds back (``Expect: 100-continue``) closes the
connection (``closing_unless_continued``).

It also writes each answer's head (status line and headers) together with its body's first
bytes: one system call and one TCP segment for a small answer, not two (``OneWrite``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
NOT_HTTP = (
    "the request is not valid HTTP/1.1: a malformed request line or header, a "
    "Content-Length that is not a number or is given twice, or Content-Length together "
    "with Transfer-Encoding"
)


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and the head-size cap of one server (``[http]`` in shipml.toml)."""

    idle_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 64 * 1024
    allowed_hosts: tuple[str, ...] = ()  # names a loopback-bound server answers too

    @classmethod
    def from_config(cls, config: Any) -> ConnectionLimits:
        """From a ProjectConfig's ``[http]`` section (defaults outside a project)."""
        section = getattr(config, "http", None)
        if section is None:
            return cls()
        return cls(
            idle_timeout_s=section.idle_timeout_s,
            header_timeout_s=section.header_timeout_s,
            body_timeout_s=section.body_timeout_s,
            max_header_bytes=section.max_header_bytes,
            allowed_hosts=tuple(section.allowed_hosts),
        )


class OneWrite:
    """The transport as one response sees it: the head uvicorn writes on
    ``http.response.start`` waits for the body's first write and leaves with it. A body
    that is not sent in the same loop turn (a stream that waits) does not hold the head:
    it is flushed on the loop's next turn, or before the connection closes."""

    __slots__ = ("cycle", "head", "loop", "state", "transport")

    def __init__(self, transport: Any, cycle: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.transport, self.cycle, self.loop = transport, cycle, loop
        self.head = b""
        self.state = 0  # 0: no head yet, 1: the head waits, 2: the head is out

    def write(self, data: bytes) -> None:
        if self.state == 1:
            self.state = 2
            data = self.head + data
            self.head = b""
        elif self.state == 0 and self.cycle.response_started:  # this is the head
            self.state, self.head = 1, data
            self.loop.call_soon(self.flush)
            return
        self.transport.write(data)

    def flush(self) -> None:
        if self.state == 1:
            self.state = 2
            head, self.head = self.head, b""
            if not self.transport.is_closing():
                self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return bool(self.transport.is_closing())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def closing_unless_continued(cycle: Any) -> Any:
    """``cycle.send``, closing the connection after an answer that came before the client
    was told to send its body. A client that sent ``Expect: 100-continue`` (curl does for
    bodies over 1 MB, .NET by default) and got a final answer instead (a 404, a 413 from
    Content-Length alone) may never send the body; kept open, its next request on the
    connection would be read as that body. ``Connection: close`` says so (RFC 9110 10.1.1)."""
    send = cycle.send

    async def answer(message: Any) -> None:
        start = message["type"] == "http.response.start"
        if start and cycle.waiting_for_100_continue and cycle.more_body:
            cycle.keep_alive = False  # uvicorn adds "connection: close", then closes
        await send(message)

    return answer


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines of ``limits``."""

    # Set by uvicorn_options() in the serving process (and again in each worker process).
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One timer per connection, not one per phase: a phase moves ``_due`` (a float);
        # the timer, when it fires, waits on until the current due time (or does nothing).
        self._deadline: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._due: float | None = None
        self._why: tuple[int | None, str, float] = (None, "idle", 0.0)
        self._head_bytes = 0
        self._refusal: tuple[int, str] | None = None

    # -- deadlines -------------------------------------------------------------------------
    def _arm(self, seconds: float, status: int | None, what: str) -> None:
        """``what``: the refusal's text, with ``{:g}`` for the seconds (built only if sent)."""
        due = self.loop.time() + seconds
        self._due, self._why = due, (status, what, seconds)
        if self._deadline is None or self._timer_at > due:
            self._cancel()
            self._timer_at = due
            self._deadline = self.loop.call_at(due, self._check)

    def _disarm(self) -> None:
        self._due = None  # the timer, if any, finds nothing to do

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _check(self) -> None:
        self._deadline = None
        due = self._due
        if due is None:
            return
        if self.loop.time() < due:  # a later phase moved the deadline: wait on
            self._timer_at = due
            self._deadline = self.loop.call_at(due, self._check)
            return
        status, what, seconds = self._why
        self._expire(status, what.format(seconds))

    def _expire(self, status: int | None, what: str) -> None:
        self._due = None
        if self.transport.is_closing():
            return
        started = self.cycle is not None and self.cycle.response_started
        if status is not None and not started:
            self._write_refusal(status, what)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's receive() returns http.disconnect
            self.cycle.message_event.set()
        self.transport.close()

    def _write_refusal(self, status: int, text: str) -> None:
        body = json.dumps({"error": text}).encode()
        head = b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Bad Request"))
        head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        self.transport.write(head + b"connection: close\r\n\r\n" + body)

    # -- uvicorn's callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.idle_timeout_s, None, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        seconds = self.limits.header_timeout_s
        self._arm(seconds, 408, "the request headers did not arrive within {:g} s")

    def _count(self, size: int) -> None:
        self._head_bytes += size
        limit = self.limits.max_header_bytes
        if self._head_bytes > limit:
            self._refusal = (431, f"the request line and headers exceed {limit} bytes")
            raise ValueError("request head too large")  # the parser stops; see below

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.limits.max_header_bytes:
            self._count(0)  # refuses
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        seconds = self.limits.body_timeout_s
        self._arm(seconds, 408, "the request body did not arrive within {:g} s")
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and cycle.transport is self.transport:
            cycle.transport = OneWrite(self.transport, cycle, self.loop)  # type: ignore[assignment]
            if self.expect_100_continue:  # its task has not run yet: it will call this send
                cycle.send = closing_unless_continued(cycle)  # type: ignore[method-assign]

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, with the idle deadline on the connection's one timer. uvicorn starts
        a keep-alive timer after every answer and cancels it at the next request's first
        bytes; after a whole request (no deadline pending) the idle deadline only moves
        ``_due`` here. Otherwise (an answer before the end of its request's body, a next
        request already begun) uvicorn's own timer runs, as it always did."""
        if self._due is not None or self.pipeline:
            super().on_response_complete()
            return
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        self._arm(self.limits.idle_timeout_s, None, "idle")

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser refused (here also: a head too large),
        as JSON like every other error (uvicorn's own is text/plain)."""
        self._disarm()
        status, text = self._refusal or (400, NOT_HTTP)
        self._write_refusal(status, text)
        self.transport.close()


def uvicorn_options(limits: ConnectionLimits, *, access_log: bool = False) -> dict[str, Any]:
    """The uvicorn settings every shipml server runs with (pass them to ``uvicorn.run``).

    No ``server: uvicorn`` header (it names the software to anyone who asks, and uvicorn
    validates it again on every answer). ``X-Forwarded-For`` and ``-Proto`` are read only
    for the access log (uvicorn's proxy-headers middleware sets the client address and
    scheme it logs; nothing else in shipml reads them): without the log, no middleware
    runs in front of the app."""
    GuardedProtocol.limits = limits
    return {
        "loop": "uvloop",
        "http": GuardedProtocol,
        "timeout_keep_alive": limits.idle_timeout_s,
        "server_header": False,
        "proxy_headers": access_log,
    }
