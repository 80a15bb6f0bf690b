"""The ``/docs`` page: the server's OpenAPI document (serving/openapi.py) as one
self-contained HTML page (no script, font or stylesheet from elsewhere: a
Content-Security-Policy forbids them, so it works offline and behind any firewall).

It shows the model's features (type, missing values, categories), every endpoint with
its summary, an example request per inference endpoint, and how to call the server from
curl and from Triton's clients. Every text from the signature is HTML-escaped. Swagger UI
is not served: it would need its scripts from a CDN or 1 MB of vendored JavaScript.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
STYLE = """
body{margin:0;background:#f4f6f9;font:15px/1.5 system-ui,sans-serif;color:#1d2430}
main{max-width:56rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;
  border:1px solid #d9dee6;border-radius:10px}
h1{margin:0 0 .3rem;font-size:1.5rem} h2{margin-top:1.8rem;font-size:1.15rem}
table{border-collapse:collapse;width:100%} td,th{padding:.3rem .5rem;text-align:left;
  border-top:1px solid #d9dee6;vertical-align:top} th{font-weight:600}
code,pre{font:13px/1.45 ui-monospace,monospace} pre{background:#f4f6f9;padding:.7rem;
  border-radius:6px;overflow-x:auto} .m{font-weight:700;color:#2f6fde}
"""


def _features(document: dict[str, Any]) -> str:
    row = document["components"]["schemas"]["Row"]
    rows = []
    for name, schema in row["properties"].items():
        kind = schema.get("type", "")
        categories = schema.get("x-shipml-categories") or []
        if categories:
            policy = "refused" if schema.get("x-shipml-unseen") != "accept" else "accepted"
            shown = ", ".join(map(str, categories[:20])) + (" ..." if len(categories) > 20 else "")
            kind += f": {shown} (new categories {policy})"
        missing = "may be missing (null)" if schema.get("nullable") else "required"
        rows.append(
            f"<tr><td><code>{escape(name)}</code></td><td>{escape(kind)}</td>"
            f"<td>{missing}</td></tr>"
        )
    return (
        "<table><tr><th>feature</th><th>type</th><th>value</th></tr>" + "".join(rows) + "</table>"
    )


def _endpoints(document: dict[str, Any]) -> str:
    rows = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            rows.append(
                f'<tr><td class="m">{method.upper()}</td><td><code>{escape(path)}</code></td>'
                f"<td>{escape(operation.get('summary', ''))}</td></tr>"
            )
    return "<table>" + "".join(rows) + "</table>"


def _example(document: dict[str, Any], path: str) -> str:
    content = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return f"<pre>{escape(json.dumps(content.get('example'), indent=1))}</pre>"


def build_docs(document: dict[str, Any], name: str) -> bytes:
    """The page, as UTF-8 bytes (built once, when the server loads)."""
    info = document["info"]
    infer = f"/v2/models/{name}/infer"
    v2_example = _example(document, "/v2/models/{model_name}/infer")
    snippet = (
        "import tritonclient.http as triton   # or tritonclient.grpc on the gRPC port\n"
        'client = triton.InferenceServerClient("HOST:PORT")\n'
        f'client.get_model_metadata("{name}")  # the inputs to send\n'
    )
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(info["title"])} · API</title><style>{STYLE}</style></head><body><main>
<h1>{escape(info["title"])}</h1><p>{escape(info["description"])}</p>
<p>The machine-readable document: <a href="openapi.json"><code>/openapi.json</code></a>
(OpenAPI {escape(document["openapi"])}). A form for one prediction: <a href="./">the demo
page</a>.</p>
<h2>Features</h2>{_features(document)}
<h2>Endpoints</h2>{_endpoints(document)}
<h2>V2 inference: <code>POST {escape(infer)}</code></h2>{v2_example}
<p>Binary tensors (what Triton's clients send by default): a JSON header of
<code>Inference-Header-Content-Length</code> bytes whose inputs carry
<code>"parameters": {{"binary_data_size": N}}</code> instead of <code>data</code>, then each
tensor's little-endian bytes (BYTES: a 4-byte length before each element).</p>
<pre>{escape(snippet)}</pre>
<h2>Records: <code>POST /predict</code></h2>{_example(document, "/predict")}
<pre>curl -s HOST:PORT/predict -H 'content-type: application/json' -d @row.json</pre>
</main></body></html>"""
    return body.encode()
