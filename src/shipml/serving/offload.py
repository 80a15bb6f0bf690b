"""Parsing and validating big request bodies in a worker process.

A thread does not free the event loop from a 10 MB body: parsing it makes millions of
Python objects in one C call that holds the GIL for hundreds of milliseconds, and no
health check is answered meanwhile. A worker process has its own GIL: it parses and
validates the body and sends back the validated columns (NumPy arrays, cheap to
unpickle). The pool starts with the first big body and stops with the server.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from shipml.errors import InferenceFailed, InvalidRequest, ServingError
from shipml.model.signature import Signature
from shipml.serving.binary import Parsed, parse_request
from shipml.serving.validation import Validator

_validator: Validator | None = None  # in the worker process


def _start(signature: dict[str, Any]) -> None:
    global _validator
    _validator = Validator(Signature.from_dict(signature))
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker never outlives its server (killed with -9, it cannot say goodbye)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _parse(protocol: str, raw: bytes, length: int | None, csv: bool) -> tuple[str, Any]:
    """In the worker: ("ok", (rows, id, wanted, binary)) or ("error", (status, message, hint))."""
    assert _validator is not None
    try:
        return "ok", parse_request(protocol, raw, length, _validator, csv)
    except ServingError as exc:
        return "error", (exc.status, exc.message, exc.hint)


class Offload:
    """A one-process pool that parses and validates bodies for one signature."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded server
                initializer=_start,
                initargs=(self.signature.to_dict(),),
            )
        return self._pool

    async def parse(
        self, protocol: str, raw: bytes, length: int | None = None, csv: bool = False
    ) -> Parsed:
        """``raw`` parsed and validated in the worker (``length``: a binary request's
        Inference-Header-Content-Length; ``csv``: a CSV ``/invocations`` body)."""
        loop = asyncio.get_running_loop()
        try:
            kind, value = await loop.run_in_executor(
                self._executor(), _parse, protocol, raw, length, csv
            )
        except BrokenProcessPool as exc:  # the worker died (killed, out of memory)
            self._pool = None
            raise InferenceFailed("the worker that parses big requests died; retry") from exc
        if kind == "ok":
            rows, rid, wanted, binary = value
            return rows, rid, wanted, binary
        status, message, hint = value
        error = InvalidRequest(message, hint=hint)
        error.status = status  # 400, or 413 for a body too large once parsed
        raise error

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
