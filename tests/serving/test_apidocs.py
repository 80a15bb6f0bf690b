"""The /docs page: self-contained (works offline), escaped, built from the document."""

from __future__ import annotations

import re

from shipml.model.signature import Feature, Signature
from shipml.serving import openapi
from shipml.serving.apidocs import build_docs

HOSTILE = '<script>alert(1)</script>"'


def test_the_page_needs_no_network_and_escapes_every_name():
    signature = Signature(
        [
            Feature(HOSTILE, "string", True, categories=['"><img src=x onerror=alert(1)>', "b"]),
            Feature("x", "float", False),
        ],
        classes=["a", "b"],
    )
    document = openapi.document(signature, name="m<b>", version="1")
    page = build_docs(document, "m<b>").decode()
    assert "<script" not in page and "<img" not in page  # only escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)  # nothing from elsewhere
    assert "/openapi.json" in page and "Inference-Header-Content-Length" in page
    assert "may be missing (null)" in page and "required" in page
    assert "new categories refused" in page
