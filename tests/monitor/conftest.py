"""A penguins model packaged as the template's pipeline does it: trained on 75% of the
rows, validated (and profiled) on the other 25%; data made to drift on purpose."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from shipml.data import table_profile
from shipml.model import ModelPackage, build_package
from tests.serving.conftest import penguins_data, penguins_model  # noqa: F401

SHIFTED = "bill_length_mm"  # moved by 2 standard deviations
TRIPLED = ("island", "Torgersen")  # its share tripled


@pytest.fixture(scope="session")
def split(penguins_data):  # noqa: F811
    X, y = penguins_data
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="session")
def monitored_package(tmp_path_factory, split) -> ModelPackage:
    X_train, X_valid, y_train, y_valid = split
    model = penguins_model(X_train, y_train)
    return build_package(
        model,
        X_valid,
        y_valid,
        path=tmp_path_factory.mktemp("monitor") / "penguins",
        reference_profile=table_profile(X_valid),
        train=X_train,
        train_labels=y_train,
    )


def holdout_rows(package: ModelPackage, repeat: int = 1) -> tuple[pd.DataFrame, pd.Series]:
    """The package's own hold-out rows (features and labels), ``repeat`` times."""
    frame = pd.read_parquet(package.path / "holdout.parquet")
    label = frame.pop(package.label)
    frame = pd.concat([frame] * repeat, ignore_index=True)
    return frame, pd.concat([label] * repeat, ignore_index=True)


def drifted(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """``frame`` with SHIFTED moved by 2 standard deviations and TRIPLED's share tripled
    (other rows' island set to it; every other column untouched). Tripled, not doubled:
    the chi-squared test of two samples (the reference is a sample too) calls a doubled
    share of 15% chance (p = 0.06) on the 86 distinct rows a test window repeats."""
    out = frame.copy()
    out[SHIFTED] = out[SHIFTED] + 2 * frame[SHIFTED].std()
    column, value = TRIPLED
    share = (frame[column] == value).mean()
    others = np.flatnonzero((frame[column] != value).to_numpy())
    rng = np.random.default_rng(seed)
    chosen = rng.choice(others, size=round(2 * share * len(frame)), replace=False)
    out.loc[out.index[chosen], column] = value
    return out


ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts")


def chromium_or_skip() -> str | None:
    """Debian's Chromium for the page checks; in CI a missing browser is a failure."""
    from shipml.errors import BrowserUnavailable
    from shipml.testing.browser import chromium_executable

    try:
        import playwright.sync_api  # noqa: F401

        path = chromium_executable()
    except (ImportError, BrowserUnavailable) as exc:
        path, why = None, str(exc)
    else:
        why = "no Chromium (scripts/chromium.sh)"
    if path is None:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI needs Chromium for the page checks: {why}")
        pytest.skip(why)
    return path


def look_at(url: str, screenshot: Path) -> dict:
    """Open ``url`` in headless Chromium with the network cut off (any request to another
    origin is refused and recorded); returns console errors, refused requests, and the
    number of drawn marks (paths, rects, lines with a size) in each ``svg.chart``."""
    from playwright.sync_api import sync_playwright

    from shipml.testing.browser import CHROMIUM_ARGS

    executable = chromium_or_skip()
    origin = url.split("/", 3)[:3]
    refused: list[str] = []
    console: list[str] = []

    def route(r) -> None:
        if r.request.url.split("/", 3)[:3] == origin or r.request.url.startswith("data:"):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: console.append(f"uncaught: {exc}"))
            page.route("**/*", route)
            response = page.goto(url, wait_until="load")
            marks = page.eval_on_selector_all(
                "svg.chart",
                """charts => charts.map(c => Array.from(c.querySelectorAll('path, rect, line'))
                    .filter(e => { const b = e.getBBox(); return b.width > 0 || b.height > 0; })
                    .length)""",
            )
            page.screenshot(path=str(screenshot), full_page=True)
            text = page.inner_text("body")
        finally:
            browser.close()
    return {
        "status": response.status if response else None,
        "console": console,
        "refused": refused,
        "marks": marks,
        "text": text,
    }


def monitor_file(package: ModelPackage, data: Path, **options: object):
    """``monitor_rows`` over a CSV or Parquet file of rows (what `shipml monitor --data`
    reads), as version 1 of penguins."""
    from shipml.monitor import monitor_rows
    from shipml.monitor.records import file_batches

    return monitor_rows(
        package,
        file_batches(data, package),
        model="penguins",
        version="1",
        source="file",
        **options,
    )
