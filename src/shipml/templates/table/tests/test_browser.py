"""Browser tests of this project (the browser suite): the model server's demo page at /,
driven in a real headless Chromium (Debian's chromium; `pip install 'shipml[browser]'`)."""

import os

import pytest

from shipml.errors import BrowserUnavailable
from shipml.testing.browser import check_demo_page

pytestmark = pytest.mark.browser

ROW = $row


def test_a_visitor_gets_an_answer_for_a_row_of_the_data(server_url, results_dir, attach):
    try:
        page = check_demo_page(server_url + "/", ROW, results_dir / "screenshots" / "row.png")
    except BrowserUnavailable as exc:
        if os.environ.get("CI") == "true":
            raise  # in CI the browser must be there
        pytest.skip(f"{exc.message} ({exc.hint})")
    attach(page.screenshot)
    assert page.error is None and not page.console_errors
    assert page.label
