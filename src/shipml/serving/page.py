"""The demo page the model server answers at ``/``: a form built from the signature that
calls ``/predict`` and shows the answer.

The page is one self-contained HTML document (inline CSS and JavaScript, no external
resource; a Content-Security-Policy forbids any), built once when the server loads. Every
text taken from the signature (model name, feature names, categories) is HTML-escaped;
the script reads features from ``data-feature`` attributes and writes answers with
``textContent``, so no signature or server text is ever parsed as HTML.

The page does no validation of its own: it sends what was typed (a number when the text
is one, the text otherwise, ``null`` for an empty field) and shows the server's answer or
its error. Stable element ids, for people and for browser tests:

- ``#demo-form``: the form; each field has ``id="feature-N"`` and ``data-feature`` (the
  feature name) and ``data-type`` (``string`` or ``float``);
- ``#predict``: the submit button;
- ``#output``: its ``data-state`` is ``idle``, ``pending``, ``done`` or ``error``;
- ``#prediction`` holds ``#label`` (the predicted label or value) and ``#probabilities``
  (one row per class with ``data-class`` and ``data-probability``);
- ``#error``: the server's error text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import quote

from shipml.model.signature import Feature, Signature

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)

STYLE = """
:root{--ink:#1d2430;--muted:#5b6472;--line:#d9dee6;--accent:#2f6fde;--bad:#b42318;
  font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink)}
body{margin:0;background:#f4f6f9}
main{max-width:44rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;
  border:1px solid var(--line);border-radius:10px}
h1{margin:0;font-size:1.5rem}
.meta{margin:.2rem 0 1.2rem;color:var(--muted)}
form{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:.8rem 1rem}
form>div{display:flex;flex-direction:column;justify-content:flex-end}
.req{color:var(--bad);text-decoration:none;margin-left:.1rem}
label{display:block;font-weight:600;font-size:.85rem;overflow-wrap:anywhere}
label small{font-weight:400;color:var(--muted)}
input,select{box-sizing:border-box;width:100%;margin-top:.2rem;padding:.4rem .5rem;
  font:inherit;border:1px solid var(--line);border-radius:6px;background:#fff}
input:focus,select:focus{outline:2px solid var(--accent);outline-offset:-1px}
button{grid-column:1/-1;justify-self:start;padding:.5rem 1.6rem;font:inherit;font-weight:600;
  color:#fff;background:var(--accent);border:0;border-radius:6px;cursor:pointer}
button:disabled{opacity:.6;cursor:wait}
#output{margin-top:1.4rem;min-height:2rem}
#prediction p{margin:0 0 .6rem;font-size:1.1rem}
#label{font-size:1.3rem}
table{border-collapse:collapse;width:100%}
td,th{padding:.25rem .4rem;text-align:left;font-weight:400;border-top:1px solid var(--line)}
tr.top th{font-weight:700}
td.bar{width:55%}
td.bar div{height:.7rem;background:var(--accent);border-radius:3px;min-width:1px}
td.pct{text-align:right;font-variant-numeric:tabular-nums;width:4.5rem}
#error{margin:0;padding:.6rem .8rem;color:var(--bad);background:#fef3f2;
  border:1px solid #fecdca;border-radius:6px;white-space:pre-wrap}
footer{margin-top:1.6rem;font-size:.8rem;color:var(--muted)}
footer a{color:inherit}
"""

SCRIPT = """
(() => {
  const form = document.getElementById("demo-form");
  const button = document.getElementById("predict");
  const output = document.getElementById("output");
  const prediction = document.getElementById("prediction");
  const label = document.getElementById("label");
  const table = document.getElementById("probabilities");
  const error = document.getElementById("error");

  function value(el) {
    const text = el.value.trim();
    if (text === "") return null;
    if (el.dataset.type !== "float") return el.value;
    const number = Number(text);
    return Number.isFinite(number) ? number : text;  // the server explains a bad number
  }

  function fail(message) {
    prediction.hidden = true;
    error.textContent = message;
    error.hidden = false;
    output.dataset.state = "error";
  }

  function show(answer) {
    label.textContent = String(answer.label);
    table.replaceChildren();
    const probabilities = Object.entries(answer.probabilities || {});
    const best = Math.max(...probabilities.map(([, p]) => p));
    for (const [name, p] of probabilities) {
      const row = table.insertRow();
      row.dataset.class = name;
      row.dataset.probability = String(p);
      if (p === best) row.className = "top";
      const head = document.createElement("th");
      head.textContent = name;
      row.append(head);
      const bar = document.createElement("div");
      bar.style.width = (100 * p).toFixed(1) + "%";
      row.insertCell().append(bar);
      row.cells[1].className = "bar";
      const pct = row.insertCell();
      pct.className = "pct";
      pct.textContent = (100 * p).toFixed(1) + "%";
    }
    table.hidden = probabilities.length === 0;
    error.hidden = true;
    prediction.hidden = false;
    output.dataset.state = "done";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const row = {};
    for (const el of form.querySelectorAll("[data-feature]")) row[el.dataset.feature] = value(el);
    output.dataset.state = "pending";
    button.disabled = true;
    try {
      const response = await fetch("predict", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({instances: [row]}),
      });
      const text = await response.text();
      let body = null;
      try { body = JSON.parse(text); } catch (_) { /* not JSON: shown as text below */ }
      if (!response.ok) {
        fail(body && body.error ? body.error : "HTTP " + response.status + ": " + text);
      } else if (!body || !Array.isArray(body.predictions) || !body.predictions.length) {
        fail("unexpected answer from the server: " + text.slice(0, 300));
      } else {
        show(body.predictions[0]);
      }
    } catch (exc) {
      fail("the request failed: " + exc.message);
    } finally {
      button.disabled = false;
    }
  });
})();
"""


def _number(value: Any) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.6g}"
    return ""


def _field(index: int, feature: Feature, stats: Mapping[str, Any]) -> str:
    name = escape(feature.name)
    key = f"feature-{index}"
    attrs = f'id="{key}" name="{name}" data-feature="{name}"'
    empty = ' placeholder="missing"' if feature.nullable else ""
    if feature.type == "string" and feature.categories is not None:
        note = "category" if feature.unseen != "accept" else "category; new values accepted"
        top = next(iter(stats.get("top") or {}), None)
        options = ['<option value="">(missing)</option>'] if feature.nullable else []
        for category in feature.categories:
            selected = " selected" if category == top else ""
            options.append(
                f'<option value="{escape(category)}"{selected}>{escape(category)}</option>'
            )
        control = f'<select {attrs} data-type="string">{"".join(options)}</select>'
    elif feature.type == "string":
        note = "text"
        control = f'<input {attrs} data-type="string" type="text"{empty}>'
    else:
        low, high = _number(stats.get("min")), _number(stats.get("max"))
        note = f"{low}–{high}" if low and high else "number"
        median = _number((stats.get("quantiles") or {}).get("p50"))
        control = (
            f'<input {attrs} data-type="float" type="text" inputmode="decimal" '
            f'value="{median}"{empty}>'
        )
    required = "" if feature.nullable else '<abbr class="req" title="required">*</abbr>'
    return (
        f'<div><label for="{key}">{name}{required} <small>{escape(note)}</small></label>'
        f"{control}</div>"
    )


def build_page(
    signature: Signature,
    *,
    name: str,
    version: str,
    profile: Mapping[str, Any] | None = None,
) -> bytes:
    """The demo page for a model, as UTF-8 bytes. ``profile`` (the package's reference
    profile, when it has one) pre-fills typical values: medians and the commonest category."""
    columns = (profile or {}).get("columns") or {}
    fields = "\n".join(
        _field(i, f, columns.get(f.name) or {}) for i, f in enumerate(signature.features)
    )
    if signature.task == "classification":
        what = f"classifier · {len(signature.classes)} classes"
    else:
        what = "regression"
    required = any(not f.nullable for f in signature.features)
    legend = " · the model needs a value for fields marked *" if required else ""
    title = escape(name)
    ver = escape(version)
    metadata = f"v2/models/{escape(quote(name, safe=''))}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{title} · shipml</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<h1 id="model">{title}</h1>
<p class="meta">version {ver} · {what} · {len(signature.features)} features</p>
<form id="demo-form" autocomplete="off" novalidate>
{fields}
<button id="predict" type="submit">Predict</button>
</form>
<section id="output" data-state="idle" aria-live="polite">
<div id="prediction" hidden><p>Prediction: <strong id="label"></strong></p>
<table id="probabilities"></table></div>
<p id="error" role="alert" hidden></p>
</section>
<footer>Served by shipml · answers from <code>POST /predict</code> ·
<a href="{metadata}">model metadata</a> · empty fields are sent as missing values{legend}</footer>
</main>
<script>{SCRIPT}</script>
</body>
</html>
""".encode()
