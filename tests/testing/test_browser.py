"""The demo page driven in a real headless Chromium (Debian's chromium through Playwright).

`make test` installs Chromium (scripts/chromium.sh); without Chromium or Playwright these
tests are skipped, except in CI (CI=true), where that is a failure."""

import json
import math
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from shipml.errors import BrowserUnavailable, TestingError
from shipml.model import build_package, model_input
from shipml.testing.browser import check_demo_page, chromium_executable
from tests.serving.conftest import free_port, start_server


def _browser() -> tuple[str | None, str]:
    """The Chromium to test with, or why there is none."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "Playwright is not installed (pip install -e '.[dev]')"
    try:
        path = chromium_executable()
    except BrowserUnavailable as exc:
        return None, exc.message
    return path, "no Chromium (run scripts/chromium.sh, or apt-get install chromium)"


CHROMIUM, WHY_NOT = _browser()
if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI needs the browser tests to run: {WHY_NOT}")
    pytest.skip(WHY_NOT, allow_module_level=True)
NASTY = "<b>&\"'"


def predict_over_http(url: str, row: dict) -> tuple[int, dict]:
    """What POST /predict answers for ``row`` (missing values as null)."""
    clean = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
    request = urllib.request.Request(
        url + "/predict",
        json.dumps({"instances": [clean]}).encode(),
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def row_of(X: pd.DataFrame, i: int) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in X.iloc[i].to_dict().items()}


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 400


def test_page_shows_the_models_prediction(
    penguins_server, penguins_package, penguins_data, tmp_path
):
    X, _ = penguins_data
    for i in (0, 150, 300):  # one row of each species
        row = row_of(X, i)
        shot = tmp_path / f"row{i}.png"
        result = check_demo_page(penguins_server + "/", row, shot, executable=CHROMIUM)
        labels, proba = penguins_package.predict(X.iloc[[i]])
        assert result.ok, result
        assert result.error is None and result.console_errors == []
        assert result.label == labels[0]
        classes = [str(c) for c in penguins_package.signature.classes]
        assert list(result.probabilities) == classes
        assert np.allclose(list(result.probabilities.values()), proba[0], atol=1e-6)
        # exactly what the server answers for the same row
        status, body = predict_over_http(penguins_server, row)
        assert status == 200 and body["predictions"][0]["probabilities"] == result.probabilities
        assert result.screenshot == shot
        assert_png(shot)


def test_missing_values_are_sent_as_missing(
    penguins_server, penguins_package, penguins_data, tmp_path
):
    X, _ = penguins_data
    assert X.iloc[3].isna().sum() >= 5  # row 3 has no measurements and no sex
    row = row_of(X, 3)
    result = check_demo_page(
        penguins_server + "/", row, tmp_path / "missing.png", executable=CHROMIUM
    )
    assert result.ok, result
    labels, _ = penguins_package.predict(X.iloc[[3]])
    assert result.label == labels[0]
    status, body = predict_over_http(penguins_server, row)
    assert status == 200 and body["predictions"][0]["probabilities"] == result.probabilities
    # the same row with zeros for the missing numbers gets another answer: the page really
    # sent null, not a default
    zeros = {k: 0.0 if k not in ("island", "sex") and math.isnan(v) else v for k, v in row.items()}
    _, other = predict_over_http(penguins_server, zeros)
    assert other["predictions"][0]["probabilities"] != result.probabilities
    # a key left out of the row is missing too
    partial = {k: v for k, v in row.items() if k != "sex"}
    again = check_demo_page(
        penguins_server + "/", partial, tmp_path / "partial.png", executable=CHROMIUM
    )
    assert again.label == result.label and again.probabilities == result.probabilities


def test_an_invalid_value_shows_the_servers_error(penguins_server, penguins_data, tmp_path):
    X, _ = penguins_data
    row = {**row_of(X, 0), "bill_length_mm": "long"}
    shot = tmp_path / "invalid.png"
    result = check_demo_page(penguins_server + "/", row, shot, executable=CHROMIUM)
    status, body = predict_over_http(penguins_server, row)
    assert status == 400
    assert result.error == body["error"]
    assert "bill_length_mm" in result.error and "'long'" in result.error
    assert result.label is None and result.probabilities == {} and not result.ok
    assert result.console_errors == []
    assert_png(shot)


def test_numeric_model_with_required_features(cancer_server, cancer_package, cancer_data, tmp_path):
    X, _ = cancer_data
    row = row_of(X, 7)
    result = check_demo_page(cancer_server + "/", row, tmp_path / "cancer.png", executable=CHROMIUM)
    labels, proba = cancer_package.predict(X.iloc[[7]])
    assert result.ok, result
    assert result.label == str(labels[0])  # integer classes are shown as their number
    assert list(result.probabilities) == ["0", "1"]
    assert np.allclose(list(result.probabilities.values()), proba[0], atol=1e-6)
    # leaving a required feature empty: the server says which one
    row["mean radius"] = None
    refused = check_demo_page(
        cancer_server + "/", row, tmp_path / "cancer-missing.png", executable=CHROMIUM
    )
    status, body = predict_over_http(cancer_server, row)
    assert status == 400 and refused.error == body["error"]
    assert "'mean radius' is missing" in refused.error


def test_regression_shows_the_predicted_value(penguins_data, tmp_path):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression

    X, _ = penguins_data
    frame = X[["island", "bill_length_mm", "flipper_length_mm", "body_mass_g"]]
    frame = frame.dropna(subset=["body_mass_g"]).reset_index(drop=True)
    features, target = frame.drop(columns=["body_mass_g"]), frame["body_mass_g"] / 1000  # kg
    model = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["island"]),
                        (
                            "num",
                            SimpleImputer(strategy="median"),
                            ["bill_length_mm", "flipper_length_mm"],
                        ),
                    ]
                ),
            ),
            ("lr", LinearRegression()),
        ]
    ).fit(model_input(features), target)
    package = build_package(model, features, target, path=tmp_path / "mass")
    assert package.signature.task == "regression"
    proc, url = start_server(package.path)
    try:
        row = {**row_of(features, 10), "flipper_length_mm": None}
        result = check_demo_page(url + "/", row, tmp_path / "mass.png", executable=CHROMIUM)
        assert result.ok, result
        assert result.probabilities == {}
        status, body = predict_over_http(url, row)
        assert status == 200 and float(result.label) == body["predictions"][0]["label"]
        expected, _ = package.predict(pd.DataFrame([row]).astype({"flipper_length_mm": float}))
        assert float(result.label) == pytest.approx(float(expected[0]), rel=1e-5)
        assert 2.5 < float(result.label) < 6.5
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_escaped_categories_reach_the_model_intact(tmp_path):
    """A category full of HTML metacharacters is offered, chosen and predicted on as is."""
    rng = np.random.default_rng(0)
    colours = rng.choice(["plain", NASTY, "a<i>b</i>"], size=120)
    X = pd.DataFrame({"colour": colours, "size": rng.normal(size=120)})
    y = np.where(X["colour"] == NASTY, "yes", "no")
    model = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])],
                    remainder="passthrough",
                ),
            ),
            ("lr", LogisticRegression()),
        ]
    ).fit(model_input(X), y)
    package = build_package(model, X, y, path=tmp_path / "nasty")
    assert NASTY in package.signature.features[0].categories
    proc, url = start_server(package.path)
    try:
        for colour in (NASTY, "a<i>b</i>", "plain"):
            row = {"colour": colour, "size": 0.25}
            result = check_demo_page(url + "/", row, tmp_path / "nasty.png", executable=CHROMIUM)
            expected, _ = package.predict(pd.DataFrame([row]))
            assert result.ok, result
            assert result.label == expected[0] == ("yes" if colour == NASTY else "no")
        with pytest.raises(TestingError, match="cannot enter 'Atlantis' for 'colour'"):
            check_demo_page(
                url + "/", {"colour": "Atlantis"}, tmp_path / "x.png", executable=CHROMIUM
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_driver_errors_are_clear(penguins_server, tmp_path):
    with pytest.raises(TestingError, match="no field for 'species'"):
        check_demo_page(
            penguins_server + "/", {"species": "Adelie"}, tmp_path / "a.png", executable=CHROMIUM
        )
    with pytest.raises(TestingError, match="is not a shipml demo page"):
        check_demo_page(penguins_server + "/v2", {}, tmp_path / "b.png", executable=CHROMIUM)
    with pytest.raises(TestingError, match="cannot open") as info:
        check_demo_page(
            f"http://127.0.0.1:{free_port()}/", {}, tmp_path / "c.png", executable=CHROMIUM
        )
    assert "server running" in (info.value.hint or "")


def test_no_answer_in_time_is_an_error_with_a_screenshot(penguins_package, tmp_path):
    """A server that serves the page but never answers /predict, seen by a Chromium that
    takes 3 s to start (a busy machine): the 2 s are the answer's, not the launch's (a
    launch slower than the answer's timeout was 'cannot start Chromium')."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from shipml.serving.page import build_page

    page = build_page(penguins_package.signature, name="stuck", version="1")
    release = threading.Event()

    class Stuck(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def do_POST(self):
            release.wait(30)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stuck)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shot = tmp_path / "stuck.png"
    slow = tmp_path / "slow-chromium"
    slow.write_text(f'#!/bin/sh\nsleep 3\nexec {CHROMIUM} "$@"\n')
    slow.chmod(0o755)
    try:
        started = time.monotonic()
        with pytest.raises(TestingError, match="showed no answer within 2s of Predict"):
            check_demo_page(
                f"http://127.0.0.1:{server.server_port}/",
                {},
                shot,
                executable=str(slow),
                timeout_s=2,
            )
        assert time.monotonic() - started < 25
        assert_png(shot)  # what the page showed while waiting
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_a_missing_chromium_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(BrowserUnavailable, match="no Chromium at '/nonexistent/chromium'") as info:
        check_demo_page(
            "http://127.0.0.1:9/", {}, tmp_path / "x.png", executable="/nonexistent/chromium"
        )
    assert "apt-get install chromium" in (info.value.hint or "")
    assert "shipml[browser]" in (info.value.hint or "")
    assert info.value.exit_code == 11
    monkeypatch.setenv("SHIPML_CHROMIUM", str(tmp_path / "nothing"))
    with pytest.raises(BrowserUnavailable, match="from SHIPML_CHROMIUM"):
        chromium_executable()
    # a file that is not a browser fails at launch, with the same hint
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrowserUnavailable, match="cannot start Chromium") as info:
        check_demo_page(
            "http://127.0.0.1:9/", {}, tmp_path / "y.png", executable=str(fake), timeout_s=10
        )
    assert "apt-get install chromium" in (info.value.hint or "")


def test_one_chromium_serves_every_check_and_one_that_died_is_started_again(
    penguins_server, penguins_data, tmp_path
):
    """Chromium starts once per process (about a second and 1.5 s of CPU that every check
    paid: `shipml test` checks the page twice); each check has a context of its own. A
    Chromium that died (killed, crashed) is started again by the next check."""
    import signal

    X, _ = penguins_data
    starts = tmp_path / "starts.log"
    counting = tmp_path / "counting-chromium"
    counting.write_text(f'#!/bin/sh\necho $$ >> {starts}\nexec {CHROMIUM} "$@"\n')
    counting.chmod(0o755)
    for i in (0, 150, 300):
        result = check_demo_page(
            penguins_server + "/", row_of(X, i), tmp_path / f"{i}.png", executable=str(counting)
        )
        assert result.ok, result
    (browser_pid,) = [int(line) for line in starts.read_text().split()]
    os.kill(browser_pid, signal.SIGKILL)
    result = check_demo_page(
        penguins_server + "/", row_of(X, 0), tmp_path / "again.png", executable=str(counting)
    )
    assert result.ok, result
    assert len(starts.read_text().split()) == 2


def test_the_callers_thread_stays_free_for_its_own_playwright(
    penguins_server, penguins_data, tmp_path
):
    """shipml's Chromium lives in a thread of its own: a project's test that starts its
    own Playwright after a check (pytest-playwright does), or a check called from code
    running an asyncio loop, works (Playwright's sync API allows one instance a thread
    and no running loop)."""
    import asyncio

    from playwright.sync_api import sync_playwright

    X, _ = penguins_data
    assert check_demo_page(penguins_server + "/", row_of(X, 0), tmp_path / "a.png").ok
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        assert browser.is_connected()
        browser.close()

    async def from_a_loop() -> bool:
        return check_demo_page(penguins_server + "/", row_of(X, 150), tmp_path / "b.png").ok

    assert asyncio.run(from_a_loop())


def _check_in_child(url: str, row: dict, shot: str, answer) -> None:
    answer.put(check_demo_page(url, row, Path(shot)).ok)


def test_a_forked_child_checks_with_a_browser_of_its_own(penguins_server, penguins_data, tmp_path):
    """A child forked after a check (multiprocessing's default on Linux) has no browser
    thread: it starts its own instead of waiting for ever on the parent's."""
    import multiprocessing

    X, _ = penguins_data
    assert check_demo_page(penguins_server + "/", row_of(X, 0), tmp_path / "parent.png").ok
    fork = multiprocessing.get_context("fork")
    answer = fork.Queue()
    child = fork.Process(
        target=_check_in_child,
        args=(penguins_server + "/", row_of(X, 150), str(tmp_path / "child.png"), answer),
    )
    child.start()
    child.join(timeout=60)
    if child.is_alive():  # waiting on the parent's browser thread, which it does not have
        child.kill()
    assert child.exitcode == 0 and answer.get(timeout=5) is True
