"""Browser tests of this project (the browser suite): the model server's demo page at /,
driven in a real headless Chromium (Debian's chromium; `pip install 'shipml[browser]'`)."""

import pytest

from shipml.testing.browser import check_demo_page

pytestmark = pytest.mark.browser


def test_a_visitor_gets_gentoo_for_a_big_biscoe_penguin(server_url, results_dir, attach):
    row = {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0,
           "flipper_length_mm": 217.0, "body_mass_g": 5080.0, "sex": None}
    page = check_demo_page(server_url + "/", row, results_dir / "screenshots" / "gentoo.png")
    attach(page.screenshot)
    assert page.error is None and not page.console_errors
    assert page.label == "Gentoo"
    assert page.probabilities["Gentoo"] > 0.5
