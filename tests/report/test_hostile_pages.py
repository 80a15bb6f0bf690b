"""Every page shipml writes, fed markup and script in everything a team member controls
(run names, parameters, tags, dataset and column names, category values, test ids and
messages, model names and versions, audit records), opened in one headless Chromium:
nothing runs, nothing is fetched, every payload is shown as text; a script slipped in
anyway would be refused by the page's policy; and another site cannot frame the
dashboard."""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shipml.monitor import monitor_rows
from shipml.monitor.records import file_batches
from shipml.report import compare, dashboard, monitor
from shipml.testing import report
from shipml.testing.browser import CHROMIUM_ARGS
from tests.monitor.conftest import chromium_or_skip, drifted, holdout_rows

RUN = "window.__pwned=(window.__pwned||0)+1;document.title='pwned'"
P = " ".join(
    [
        f'<img src=x onerror="{RUN}">',
        f"</script><script>{RUN}</script>",
        f'"\'><svg onload="{RUN}">',
        f"<!--<script>{RUN}</script>-->",
        f"javascript:{RUN}",
        "\u2028\u2029</title></style><iframe src=javascript:1>",
    ]
)
FOREIGN = "script, iframe, object, embed, img:not([src^='data:']), [onerror], [onload], a, base"
# What a page holds that it did not build: markup from the payload, a script run.
LOOK = f"""() => ({{
    pwned: window.__pwned || 0,
    title: document.title,
    foreign: Array.from(document.querySelectorAll("{FOREIGN}"), e => e.outerHTML.slice(0, 80)),
    shown: document.body.innerText.includes("onerror="),
}})"""
# A payload that got past the escaping: the page's policy must stop it running.
SLIP = """() => new Promise(done => {
    document.body.insertAdjacentHTML("beforeend",
        '<img src="x" onerror="window.__slipped=1"><img src="x" onerror="window.__slipped=1">');
    setTimeout(() => done(window.__slipped || 0), 300);
})"""


def _results() -> dict[str, Any]:
    """A test session's results with a payload in every text, and one huge message."""
    test = {
        "suite": "model",
        "check": None,
        "name": f"test_x[{P}]",
        "title": P,
        "outcome": "failed",
        "duration": 0.1,
        "message": P,
        "metrics": {P: 1.0},
        "details": [{P: P, "value": 0.5}, {P: "b", "value": 0.25}],
        "attachments": [P],
    }
    huge = dict(test, message="x" * 10 * report.MAX_TEXT + P, outcome="error")
    return {
        "created": P,
        "shipml": P,
        "model": {"ref": P, "onnx_sha256": P, "run_id": P, "git_commit": P},
        "against": f"javascript:{RUN}",
        **report.summarize([test, huge]),
        "metrics": {P: 1.0},
        "tests": [test, huge],
    }


def _comparison() -> compare.Comparison:
    predictions = {
        "task": "classification",
        "y": [P, "b", P, "b"],
        "labels": [P, "b", "b", "b"],
        "proba": [[0.1, 0.9], [0.8, 0.2], [0.6, 0.4], [0.7, 0.3]],
        "classes": ["b", P],
    }
    entries = [
        compare.Entry(
            label=f"{P} {i}",
            run_id=P,
            version=None,
            params={P: f"{P}{i}"},
            metrics={P: 0.5 + i},
            datasets={P: P},
            commit=P,
            tests={"suites": {P: P}, "metrics": {f"slice {P}": 1.0}},
            predictions=predictions,
        )
        for i in range(2)
    ]
    c = compare.Comparison(entries)
    c.params = {P: [f"{P}0", f"{P}1"]}
    c.metrics = {P: [0.5, 1.5]}
    c.datasets = {P: [P, P]}
    c.code_diff = P
    return c


def _monitored(package: Any, folder: Path) -> dict[str, Any]:
    """A monitoring pass whose feature names, categories and source are payloads."""
    frame, labels = holdout_rows(package)
    moved = drifted(frame)
    moved[package.label] = labels
    moved.to_parquet(folder / "rows.parquet")
    batches = file_batches(folder / "rows.parquet", package)
    result = monitor_rows(package, batches, model=P, version=P, source=P, slices=["island"])
    data = copy.deepcopy(result.to_dict())
    for i, f in enumerate(data["drift"]["features"]):
        f["name"] = f"{P} {i}"
        f["labels"] = [P] * len(f["labels"])
        f["unseen"] = {P: 2}
        f["flags"] = [*f["flags"], P]
    data["breaches"] = [P]
    data["quality"]["slices"] = {P: {P: {"labelled": 1, "accuracy": 0.5}}}
    return data


def _overview(monitored: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's data with a payload in every text."""
    version = {
        "version": P,
        "aliases": [P],
        "created": P,
        "run_id": P,
        "datasets": P,
        "commit": P,
        "tests": P,
        "gates": [{"name": P, "holds": False}],
        "monitor": P,
    }
    row = {
        "seq": 1,
        "time": P,
        "request_id": P,
        "model": P,
        "variant": P,
        "label": P,
        "latency_ms": 1.0,
    }
    stats = {"requests": 1, "error_rate": 0.0, "p99_ms": 1.0, "labelled": 0, "accuracy": None}
    return {
        "project": P,
        "time": P,
        "models": [{"name": P, "aliases": {P: P}, "error": P, "versions": [version]}],
        "rollout": {
            "weights": {P: 90, "b": 10},
            "mode": P,
            "state": P,
            "step": P,
            "analysis": {"variants": {P: stats}},
        },
        "monitor": monitored,
        "predictions": {"verified": {"ok": False, "problem": P}, "rows": [row]},
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for every page of this module."""
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as p:
        # rebound.example: a site whose name an attacker turned into 127.0.0.1
        rebound = "--host-resolver-rules=MAP rebound.example 127.0.0.1"
        chromium = p.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, rebound])
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser: Any, url: str, also: str = "") -> tuple[Any, dict[str, list[str]]]:
    """A new page at ``url``, every request that leaves its origin (or ``also``'s) refused
    and noted."""
    seen: dict[str, list[str]] = {"refused": [], "console": []}
    origins = [url.split("/", 3)[:3], also.split("/", 3)[:3]]

    def route(r: Any) -> None:
        if r.request.url.split("/", 3)[:3] in origins or r.request.url.startswith("data:"):
            r.continue_()
        else:
            seen["refused"].append(r.request.url)
            r.abort()

    page = browser.new_page()
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: seen["console"].append(f"uncaught: {exc}"))
    page.route("**/*", route)
    page.goto(url, wait_until="load")
    return page, seen


def test_no_payload_runs_or_loads_anything_on_any_page(monitored_package, browser, tmp_path):
    monitored = _monitored(monitored_package, tmp_path)
    pages = {
        "report.html": report.render_html(_results(), tmp_path),
        "compare.html": compare.to_html(_comparison()),
        "monitor.html": monitor.render(monitored),
        "dashboard.html": dashboard.render(_overview(monitored)),
    }
    for name, html in pages.items():
        file = tmp_path / name
        file.write_text(html, encoding="utf-8")
        page, seen = _open(browser, file.as_uri())
        try:
            looked = page.evaluate(LOOK)
            seen = copy.deepcopy(seen)  # before the slip, which the policy reports
            slipped = page.evaluate(SLIP)
        finally:
            page.close()
        assert looked["pwned"] == 0 and looked["title"] != "pwned", (name, looked)
        assert looked["foreign"] == [], (name, looked["foreign"])
        assert looked["shown"], f"{name} does not show the payload as text"
        assert seen == {"refused": [], "console": []}, (name, seen)
        assert slipped == 0, f"{name}: a script slipped into the page ran (no CSP)"
    # one 200,000-character message: the page shows 20,000 of them and says where the rest is
    assert len(pages["report.html"]) < 150_000
    assert "more characters in results.json" in pages["report.html"]


def _serve(app: Any) -> tuple[Any, str]:
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def test_another_site_cannot_frame_or_read_the_dashboard(monitored_package, browser, tmp_path):
    """Clickjacking: a page elsewhere (here a file) framing the dashboard gets nothing;
    DNS rebinding: a site whose name now points at 127.0.0.1 is refused (no token there)."""
    overview = _overview(None)  # type: ignore[arg-type]
    server, url = _serve(dashboard.Dashboard(lambda: overview))
    try:
        framing = tmp_path / "framing.html"
        framing.write_text(f'<iframe src="{url}/" width=800 height=600></iframe>')
        page, _ = _open(browser, framing.as_uri(), also=url)
        try:
            page.wait_for_timeout(500)
            [frame] = [f for f in page.frames if f is not page.main_frame]
            shown = frame.url.startswith(url)  # else Chromium's error page
            shown = shown or frame.evaluate("() => !!document.querySelector('#predictions')")
        finally:
            page.close()
        assert not shown, "the dashboard was drawn inside another site's frame"
        page, seen = _open(browser, url + "/")  # its own tab: drawn, nothing run or fetched
        try:
            looked = page.evaluate(LOOK)
        finally:
            page.close()
        assert looked["pwned"] == 0 and looked["foreign"] == [] and looked["shown"]
        assert seen == {"refused": [], "console": []}
        page = browser.new_page()  # DNS rebinding: another site's name, this machine's data
        try:
            answer = page.goto(url.replace("127.0.0.1", "rebound.example") + "/api/overview")
            assert answer is not None and answer.status == 403, answer and answer.text()[:200]
        finally:
            page.close()
    finally:
        server.should_exit = True


def test_the_job_summary_shows_a_hostile_run_as_text():
    """`--summary` writes markdown a CI page renders, HTML included: a parameter or a
    label of ``<img src=...>`` or ``[approve](https://...)`` showed an image or a link
    there, and a ``|`` or a line break broke the table."""
    from markdown_it import MarkdownIt

    from shipml.report.model_card import _markdown

    c = _comparison()
    c.params = {"p|q\nr": [f"{P} [approve](https://example.com/x) ![i](https://e/i.png)", "a"]}
    version = SimpleNamespace(ref=P, aliases=[P], tags={})
    card = SimpleNamespace(version=version, commit=P, run_id=P, metrics={"m": 1.0})
    card.tests = {"suites": {P: P}}
    for text, cells in ((compare.markdown(c), 3), (_markdown(card), 2)):  # type: ignore[arg-type]
        rendered = MarkdownIt("commonmark").enable("table").render(text)
        assert not re.search(r"<(img|a|script|svg|iframe)\b", rendered), rendered
        rows = re.findall(r"<tr>(.*?)</tr>", rendered, re.S)
        assert {row.count("<t") for row in rows} == {cells}  # every row: its cells, no more
        assert "onerror=" in rendered  # shown, as text


def test_report_html_names_a_huge_screenshot_instead_of_embedding_it(tmp_path: Path):
    """A 6 MB PNG became 8 MB of base64 in a page meant for a mail or a CI artifact."""
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + bytes(report.MAX_IMAGE))
    small = tmp_path / "small.png"
    small.write_bytes(b"\x89PNG" + bytes(100))
    results = _results()
    results["tests"][0]["attachments"] = [str(big), str(small)]
    page = report.render_html(results, tmp_path)
    assert page.count("data:image/png;base64,") == 1  # the small one
    assert "huge.png</code> (5 MB, not shown)" in page and len(page) < 200_000
