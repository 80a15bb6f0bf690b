"""Driving the model server's demo page in a real headless Chromium (Playwright).

``check_demo_page`` opens the page a server answers at ``/``, fills its form with one row,
clicks Predict, waits for the answer, reads what the page shows and keeps a full-page
screenshot. It uses Debian's ``chromium`` (Playwright's own browser download does not work
everywhere); ``SHIPML_CHROMIUM`` names another executable. Playwright is imported only
when a page is checked, so shipml works without it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import shutil
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.errors import BrowserUnavailable, TestingError

CHROMIUM_ENV = "SHIPML_CHROMIUM"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
# Starting Chromium is not the page's answer: on a busy CI machine it takes seconds, so
# it gets this long whatever the answer's ``timeout_s`` (which it once shared).
LAUNCH_TIMEOUT_S = 60.0
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
)
INSTALL_HINT = (
    "install Debian's Chromium (apt-get install chromium) or set SHIPML_CHROMIUM to a "
    "Chromium executable, and Playwright (pip install 'shipml[browser]')"
)
ANSWERED = '#output[data-state="done"], #output[data-state="error"]'
# The form's fields, in page order: [feature, tag, type, offered options (selects only)].
FIELDS_JS = """els => els.map(e => [e.dataset.feature, e.tagName.toLowerCase(), e.dataset.type,
  e.tagName === "SELECT" ? Array.from(e.options, o => o.value) : null])"""
NETWORK_NOTE = "Failed to load resource: the server responded with a status of"
PROBABILITIES_JS = """rows => rows.map(r => [r.dataset.class, Number(r.dataset.probability)])"""


@dataclass(frozen=True)
class PageResult:
    """What the demo page showed after Predict was clicked."""

    url: str
    label: str | None  # the text of #label; None when the page showed an error
    probabilities: dict[str, float]  # class -> probability (classifiers), else empty
    error: str | None  # the text of #error (the server's message), None on success
    screenshot: Path  # the full-page PNG
    console_errors: list[str] = field(default_factory=list)  # console errors, uncaught ones

    @property
    def ok(self) -> bool:
        """A prediction was shown and the page logged no error."""
        return self.error is None and self.label is not None and not self.console_errors


def chromium_executable(executable: str | None = None) -> str | None:
    """The Chromium to launch: ``executable``, else ``$SHIPML_CHROMIUM``, else Debian's
    ``/usr/bin/chromium`` when present, else None (Playwright's own browser)."""
    chosen = executable or os.environ.get(CHROMIUM_ENV)
    if chosen:
        path = shutil.which(chosen) or chosen
        if not Path(path).is_file():
            source = "executable" if executable else CHROMIUM_ENV
            raise BrowserUnavailable(
                f"no Chromium at {chosen!r} (from {source})", hint=INSTALL_HINT
            )
        return path
    return DEBIAN_CHROMIUM if Path(DEBIAN_CHROMIUM).is_file() else None


def _text(value: Any) -> str:
    """A row value as the text a person would type; missing values become empty."""
    import pandas as pd

    if isinstance(value, str):
        return value
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if hasattr(value, "item"):  # NumPy scalars
        value = value.item()
    if isinstance(value, float | int) and not isinstance(value, bool):
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
    return str(value)


def check_demo_page(
    url: str,
    row: Mapping[str, Any],
    screenshot: Path,
    *,
    executable: str | None = None,
    timeout_s: float = 30,
) -> PageResult:
    """Open the demo page at ``url`` in headless Chromium, fill the form with ``row``
    (feature -> value; a missing key or a missing value leaves the field empty), click
    Predict, wait for the answer and save a full-page PNG to ``screenshot``.

    Raises ``BrowserUnavailable`` when Playwright or Chromium is missing, and
    ``TestingError`` when the page cannot be opened, does not hold the demo form, cannot
    express the row, or shows no answer within ``timeout_s``. A prediction the server
    refused is not an exception: its message is ``PageResult.error``."""
    try:
        from playwright.sync_api import Error as PlaywrightError
    except ImportError as exc:
        raise BrowserUnavailable(f"Playwright is not installed ({exc})", hint=INSTALL_HINT) from exc
    path = chromium_executable(executable)
    screenshot = Path(screenshot)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    runner = _browser_thread()

    def check() -> PageResult:  # in the browser's thread
        try:
            context = runner.context(path, timeout_s)
        except PlaywrightError as exc:
            raise BrowserUnavailable(
                f"cannot start Chromium ({path or 'Playwright bundled browser'}): {_first(exc)}",
                hint=INSTALL_HINT,
            ) from exc
        try:
            return _drive(context.new_page(), url, row, screenshot, timeout_s)
        except PlaywrightError as exc:
            raise TestingError(
                f"the browser failed on {url}: {_first(exc)}",
                hint=f"see the screenshot {screenshot} if there is one, and the server's log",
            ) from exc
        finally:
            with contextlib.suppress(PlaywrightError):  # the browser may have died
                context.close()

    result: PageResult = runner.call(check)
    return result


class _BrowserThread:
    """shipml's Playwright and Chromium, in a thread of their own, started by the first
    check and closed when the process exits. Every check gets a context of its own (its
    own cookies and storage, as a fresh profile gave) without paying Chromium's start
    again (a second, 1.2 s of CPU: `shipml test` checks the page twice). Playwright's sync
    API is bound to the thread that started it and refuses a second instance there or a
    running asyncio loop: in a thread of its own, it leaves the caller's thread free for
    its own Playwright (pytest-playwright in a project's tests) and its own loop."""

    def __init__(self) -> None:
        self.tasks: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self.playwright: Any = None
        self.browsers: dict[str | None, Any] = {}  # by executable
        threading.Thread(target=self._serve, name="shipml-chromium", daemon=True).start()
        atexit.register(self.close)

    def call(self, task: Callable[[], Any]) -> Any:
        """``task()`` in this thread; its result, or its exception raised here."""
        done: Future[Any] = Future()
        self.tasks.put((task, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            task, done = self.tasks.get()
            try:
                done.set_result(task())
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)

    def context(self, path: str | None, timeout_s: float) -> Any:
        """(In this thread.) A new context of the Chromium at ``path``; one that died since
        the last check (its end not yet noticed) is started again, once."""
        from playwright.sync_api import Error as PlaywrightError

        viewport = {"width": 1000, "height": 800}
        try:
            return self._browser(path, timeout_s).new_context(viewport=viewport)
        except PlaywrightError:
            self._forget(path)
            return self._browser(path, timeout_s).new_context(viewport=viewport)

    def _browser(self, path: str | None, timeout_s: float) -> Any:
        browser = self.browsers.get(path)
        if browser is not None and browser.is_connected():
            return browser
        self._forget(path)
        if self.playwright is None:
            from playwright.sync_api import sync_playwright

            self.playwright = sync_playwright().start()
        browser = self.browsers[path] = self.playwright.chromium.launch(
            executable_path=path,
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=max(LAUNCH_TIMEOUT_S, timeout_s) * 1000,
        )
        return browser

    def _forget(self, path: str | None) -> None:
        browser = self.browsers.pop(path, None)
        with contextlib.suppress(Exception):  # a browser that died is closed already
            if browser is not None:
                browser.close()

    def _close_all(self) -> None:
        for path in list(self.browsers):
            self._forget(path)
        with contextlib.suppress(Exception):
            if self.playwright is not None:
                self.playwright.stop()
        self.playwright = None

    def close(self) -> None:
        """At exit: the browsers and Playwright, within 10 s."""
        done: Future[Any] = Future()
        self.tasks.put((self._close_all, done))
        with contextlib.suppress(Exception):
            done.result(timeout=10)


_THREAD: dict[int, _BrowserThread] = {}  # by process id: a forked child has no such thread
_THREAD_LOCK = threading.Lock()


def _browser_thread() -> _BrowserThread:
    with _THREAD_LOCK:
        pid = os.getpid()
        if pid not in _THREAD:
            _THREAD.clear()
            _THREAD[pid] = _BrowserThread()
        return _THREAD[pid]


def _drive(
    page: Any, url: str, row: Mapping[str, Any], screenshot: Path, timeout_s: float
) -> PageResult:
    """Open, fill, click, wait, read, screenshot (in an open browser page)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    console: list[str] = []
    page.set_default_timeout(timeout_s * 1000)
    page.on("console", lambda m: _console(console, m.type, m.text))
    page.on("pageerror", lambda exc: console.append(f"uncaught: {exc}"))
    try:
        response = page.goto(url, wait_until="load")
    except PlaywrightError as exc:
        raise TestingError(
            f"cannot open {url}: {_first(exc)}", hint="is the model server running there?"
        ) from exc
    if response is None or response.status != 200 or not page.locator("#demo-form").count():
        status = response.status if response is not None else "no response"
        raise TestingError(
            f"{url} is not a shipml demo page (HTTP {status}, no #demo-form)",
            hint="give the model server's base URL, e.g. http://127.0.0.1:8080/",
        )
    _fill(page, row)
    page.click("#predict")
    try:
        page.wait_for_selector(ANSWERED)
    except PlaywrightTimeout as exc:
        page.screenshot(path=str(screenshot), full_page=True)
        raise TestingError(
            f"the page at {url} showed no answer within {timeout_s:g}s of Predict",
            hint=f"see the screenshot {screenshot} and the server's log",
        ) from exc
    state = page.get_attribute("#output", "data-state")
    page.screenshot(path=str(screenshot), full_page=True)
    if state == "error":
        error = page.text_content("#error") or ""
        return PageResult(url, None, {}, error, screenshot, list(console))
    label = page.text_content("#label")
    rows = page.eval_on_selector_all("#probabilities [data-class]", PROBABILITIES_JS)
    probabilities = {str(c): float(v) for c, v in rows}
    return PageResult(url, label, probabilities, None, screenshot, list(console))


def _first(exc: BaseException) -> str:
    """The first line of a Playwright error (the rest is its call log)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _console(errors: list[str], kind: str, text: str) -> None:
    """Keep the page's console errors, except Chromium's note on a refused request (the
    server's answer to it is in ``PageResult.error``)."""
    if kind == "error" and not text.startswith(NETWORK_NOTE):
        errors.append(text)


def _fill(page: Any, row: Mapping[str, Any]) -> None:
    fields = page.eval_on_selector_all("[data-feature]", FIELDS_JS)
    names = [f[0] for f in fields]
    unknown = [k for k in row if k not in names]
    if unknown:
        raise TestingError(
            f"the demo page has no field for {unknown[0]!r}",
            hint=f"its fields: {', '.join(names)}",
        )
    controls = page.locator("[data-feature]")
    for index, (name, tag, _kind, options) in enumerate(fields):
        text = _text(row.get(name))
        control = controls.nth(index)
        if tag == "select":
            if text not in options:
                offered = ", ".join(repr(o) if o else "(missing)" for o in options)
                raise TestingError(
                    f"the demo page cannot enter {text or 'a missing value'!r} for {name!r}",
                    hint=f"its choices: {offered}",
                )
            control.select_option(value=text)
        else:
            control.fill(text)
