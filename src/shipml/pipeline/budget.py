"""The budget of a search (`shipml tune`): its length read from text (``10m``, ``1h30m``),
the clock and signals that stop it (``Stopper``), and SIGTERM as Ctrl-C while the best
trial is packaged (``no_signals``)."""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from shipml.errors import TuneError
from shipml.pipeline.context import RunStopped, current, interrupt

MAX_BUDGET_S = 7 * 24 * 3600.0
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``10m``, ``1h30m``, ``1.5h``."""
    raw = str(text).strip().lower().replace(" ", "")
    match = _DURATION.match(raw) if raw and len(raw) <= 32 else None
    if not match or not any(match.groups()):
        raise TuneError(
            f"cannot read the budget {str(text)[:40]!r}",
            hint="write seconds, minutes or hours: 90s, 10m, 1h30m",
        )
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    seconds = h * 3600 + m * 60 + s
    if not 1.0 <= seconds <= MAX_BUDGET_S:
        raise TuneError(
            f"a budget of {seconds:g} s is out of range",
            hint="give at least 1s and at most 7 days (168h)",
        )
    return seconds


class SearchStopped(RunStopped):
    """The search's deadline passed or a signal asked it to stop."""


class Stopper:
    """The search's clock and its signals. When the deadline passes, or on SIGINT/SIGTERM,
    the running step is interrupted (``SearchStopped``); between steps the stop waits
    for the next step to start. A second signal aborts at once (``KeyboardInterrupt``).
    Signals and the timer are handled only in the main thread; elsewhere the deadline is
    checked between steps."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline  # time.monotonic()
        self.reason: str | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
                self._saved[sig] = signal.signal(sig, self._handle)
            if self.deadline is not None:
                signal.setitimer(signal.ITIMER_REAL, max(self.deadline - time.monotonic(), 1e-3))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in self._saved.items():
                signal.signal(sig, handler)
            self._saved.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGALRM:
            if self.deadline is not None and time.monotonic() < self.deadline - 0.01:
                signal.setitimer(signal.ITIMER_REAL, self.deadline - time.monotonic())
                return
            self.reason = self.reason or "budget"
        elif self.reason is not None and self.reason != "budget":
            raise KeyboardInterrupt  # a second Ctrl-C or SIGTERM: stop everything now
        else:
            self.reason = f"signal {signal.Signals(signum).name}"
        if current() is not None:  # inside a step's code: stop it there
            interrupt(SearchStopped(self.reason))

    @property
    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """Raise ``SearchStopped`` if the search must stop (called between steps)."""
        if self.reason is None and self.deadline is not None and self.remaining == 0:
            self.reason = "budget"
        if self.reason is not None:
            raise SearchStopped(self.reason)


@contextlib.contextmanager
def no_signals() -> Iterator[None]:
    """While the best trial is packaged and tested: SIGTERM stops it like Ctrl-C (cleanup
    runs), and the search's timer is off."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    saved = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)
