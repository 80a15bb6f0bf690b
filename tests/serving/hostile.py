"""Tools to attack any HTTP server: an ASGI app served on a real socket in a thread (with
shipml's uvicorn options), raw sockets for half-sent requests, huge bodies and the RSS of
this process. Used against the model server and the gateway."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from shipml.serving.connection import ConnectionLimits, uvicorn_options

# One penguins row, valid for the template's model (the hostile tests vary it).
ROW = {
    "island": "Biscoe",
    "bill_length_mm": 45.5,
    "bill_depth_mm": 15.0,
    "flipper_length_mm": 210.0,
    "body_mass_g": 4800.0,
    "sex": "male",
    "year": 2008.0,
}


def rss_mb() -> float:
    """Resident memory of this process (MB), from /proc."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * 4096 / 1e6


@contextmanager
def serve(app: Any, limits: ConnectionLimits | None = None) -> Iterator[str]:
    """``app`` behind uvicorn (shipml's options) on a free loopback port; yields its URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = uvicorn_options(limits or ConnectionLimits())
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port.split("/")[0])


def raw_request(url: str, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(address(url), timeout=timeout) as conn:
        conn.sendall(data)
        return read_until_closed(conn)


def read_until_closed(conn: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def read_response(conn: socket.socket) -> bytes:
    """One HTTP response (head and Content-Length body); what arrived if the server closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def send_big_body(url: str, path: str, size: int, *, chunked: bool = False) -> bytes:
    """POST a ``size``-byte body (streamed, never held in memory) and return the answer.
    Sending stops early if the server closes the connection."""
    block = b"[" + b"1," * (1 << 19)  # 1 MiB of plausible JSON
    host, port = address(url)
    head = f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
    head += "transfer-encoding: chunked\r\n\r\n" if chunked else f"content-length: {size}\r\n\r\n"
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(head.encode())
        sent = 0
        try:
            while sent < size:
                piece = block[: min(len(block), size - sent)]
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                conn.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed
        try:
            return read_response(conn)
        except ConnectionResetError:
            return b""
