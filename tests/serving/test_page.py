"""The demo page at `/`: served once built, a form from the signature, escaped, calling
/predict. (tests/testing/test_browser.py drives it in a real Chromium.)"""

import urllib.request
from html.parser import HTMLParser

import pytest
from starlette.testclient import TestClient

from shipml.data.profile import table_profile
from shipml.model.signature import Feature, Signature
from shipml.serving import ModelServer, Predictor
from shipml.serving.page import build_page

NASTY = "<b>&\"'"


class Elements(HTMLParser):
    """Every start tag with its (decoded) attributes, and the text inside <script>."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        wanted = attrs.items()
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in wanted)]

    def options(self, feature: str) -> list[str | None]:
        """The option values of the select for ``feature``, in order."""
        out, inside = [], False
        for tag, attrs in self.tags:
            if tag == "select":
                inside = attrs.get("data-feature") == feature
            elif tag == "option" and inside:
                out.append(attrs.get("value"))
        return out


@pytest.fixture
def client(penguins_package):
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins", version="4"))
    with TestClient(app) as c:
        yield c


def test_page_is_served_as_html_at_the_root(client):
    for path in ("/", "/index.html"):
        resp = client.get(path)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/html; charset=utf-8"
        assert resp.text.startswith("<!doctype html>")
    assert client.get("/").content == client.get("/index.html").content
    assert client.get("/other.html").status_code == 404


def test_every_feature_has_a_field_of_its_kind(client, penguins_package):
    page = Elements(client.get("/").text)
    signature = penguins_package.signature
    fields = [a for _, a in page.tags if "data-feature" in a]
    assert [a["data-feature"] for a in fields] == signature.names
    assert [a["id"] for a in fields] == [f"feature-{i}" for i in range(len(signature.names))]
    for feature in signature.features:
        if feature.type == "string":
            (select,) = page.find("select", **{"data-feature": feature.name})
            assert select["data-type"] == "string"
            expected = ([""] if feature.nullable else []) + feature.categories
            assert page.options(feature.name) == expected
        else:
            (field,) = page.find("input", **{"data-feature": feature.name})
            assert field["data-type"] == "float"
            assert field["inputmode"] == "decimal"
    for element_id in (
        "demo-form",
        "predict",
        "output",
        "prediction",
        "label",
        "probabilities",
        "error",
        "model",
    ):
        assert len([a for _, a in page.tags if a.get("id") == element_id]) == 1, element_id
    (output,) = page.find("section", id="output")
    assert output["data-state"] == "idle"
    assert page.find("h1", id="model") and "penguins" in client.get("/").text
    assert "version 4" in client.get("/").text
    assert not page.find("abbr")  # every penguins feature may be missing
    assert "fields marked *" not in client.get("/").text


def test_the_script_posts_instances_to_predict_and_nothing_is_loaded_from_outside(client):
    html = client.get("/").text
    page = Elements(html)
    (script,) = page.scripts
    assert 'fetch("predict"' in script and 'method: "POST"' in script
    assert "JSON.stringify({instances: [row]})" in script
    # the answer is written as text, never parsed as HTML
    assert "innerHTML" not in script and "textContent" in script
    # self-contained: no external script, style sheet, image or font; a CSP forbids them
    assert all("src" not in attrs for _, attrs in page.tags)
    assert not page.find("link")
    assert "http://" not in html and "https://" not in html and "url(" not in html
    (csp,) = page.find("meta", **{"http-equiv": "Content-Security-Policy"})
    assert "default-src 'none'" in csp["content"] and "connect-src 'self'" in csp["content"]


def test_the_page_is_built_once_at_load_time(penguins_package, monkeypatch):
    import shipml.serving.documents as app_module

    calls = []
    real = app_module.build_page
    monkeypatch.setattr(app_module, "build_page", lambda *a, **k: calls.append(1) or real(*a, **k))
    app = ModelServer(Predictor.load(penguins_package.path, name="penguins"))
    with TestClient(app) as c:
        bodies = {c.get("/").content for _ in range(3)}
    assert len(calls) == 1 and bodies == {app.documents.page}


def test_signature_text_is_escaped(penguins_package):
    signature = Signature(
        [
            Feature(NASTY, "string", True, ["plain", NASTY, "</select><script>alert(1)</script>"]),
            Feature('x"><script>alert(2)</script>', "float", False),
            Feature("free text", "string", False, None),
        ],
        classes=["a", "b"],
    )
    html = build_page(signature, name="m<script>", version="1&2").decode()
    assert "<b>" not in html and "alert(1)</script>" not in html and "alert(2)</script>" not in html
    page = Elements(html)
    assert len(page.find("script")) == 1  # only the page's own script
    assert not page.find("b")
    # the browser decodes the escaped attributes back to the exact signature values
    assert page.options(NASTY) == ["", "plain", NASTY, "</select><script>alert(1)</script>"]
    assert page.find("input", **{"data-feature": 'x"><script>alert(2)</script>'})
    (text,) = page.find("input", **{"data-feature": "free text"})
    assert text["type"] == "text" and text["data-type"] == "string"
    assert "m&lt;script&gt;" in html and "1&amp;2" in html
    assert 'href="v2/models/m%3Cscript%3E"' in html


def test_required_and_regression_pages(penguins_package):
    signature = Signature(
        [Feature("size", "float", False), Feature("colour", "string", False, ["red", "blue"])],
        task="regression",
        label_type="float",
    )
    html = build_page(signature, name="price", version="2").decode()
    page = Elements(html)
    assert "regression" in html and "classifier" not in html
    assert page.options("colour") == ["red", "blue"]  # not nullable: no empty choice
    assert len(page.find("abbr", **{"class": "req", "title": "required"})) == 2
    assert "the model needs a value for fields marked *" in html
    (size,) = page.find("input", **{"data-feature": "size"})
    assert "placeholder" not in size  # only nullable fields say "missing"


def test_profile_fills_typical_values(penguins_data):
    X, _ = penguins_data
    signature = Signature(
        [
            Feature("island", "string", True, ["Biscoe", "Dream", "Torgersen"]),
            Feature("bill_length_mm", "float", True),
        ],
        classes=["Adelie"],
    )
    page = Elements(build_page(signature, name="p", version="1", profile=table_profile(X)).decode())
    (bill,) = page.find("input", **{"data-feature": "bill_length_mm"})
    assert float(bill["value"]) == pytest.approx(X["bill_length_mm"].median(), rel=1e-5)
    assert bill["placeholder"] == "missing"
    commonest = X["island"].value_counts().index[0]
    assert [a["value"] for t, a in page.tags if t == "option" and "selected" in a] == [commonest]
    # without a profile nothing is pre-filled or pre-selected
    bare = Elements(build_page(signature, name="p", version="1").decode())
    assert bare.find("input", **{"data-feature": "bill_length_mm"})[0]["value"] == ""
    assert not [a for t, a in bare.tags if t == "option" and "selected" in a]


def test_page_over_a_real_socket(penguins_server):
    with urllib.request.urlopen(penguins_server + "/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        body = resp.read()
    assert int(resp.headers["Content-Length"]) == len(body)
    page = Elements(body.decode())
    assert [a["data-feature"] for _, a in page.tags if "data-feature" in a][:2] == [
        "island",
        "bill_length_mm",
    ]
