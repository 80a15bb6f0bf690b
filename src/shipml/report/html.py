"""Self-contained HTML pages: inline CSS, charts inline as SVG, images as data: URIs,
nothing fetched from the network. Every value is escaped."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;
padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .2rem} h2{font-size:1.15rem;margin:1.8rem 0 .5rem;
border-bottom:1px solid #e3e6eb;padding-bottom:.2rem} h3{font-size:1rem;margin:1rem 0 .3rem}
.meta{color:#5a6272;font-size:.9rem} code{background:#f1f3f6;padding:0 .25rem;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.4rem 0} td,th{padding:.3rem .5rem;
border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top} th{background:#f6f7f9}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.diff{background:#fff6e0} .good{color:#1f8a4c} .bad{color:#c62828}
.badge{display:inline-block;padding:0 .45rem;border-radius:9px;font-size:.8rem;color:#fff}
.passed{background:#1f8a4c}.failed{background:#c62828}.skipped{background:#8a8f98}
.charts{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.charts figure{margin:0}.charts svg{max-width:100%;height:auto}
pre{background:#f6f7f9;padding:.6rem;overflow:auto;font-size:.8rem;max-height:30rem}
.note{color:#5a6272;font-style:italic}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, classes: Any = None) -> str:
    """An HTML table; ``classes(row_index, row)`` may give a class for a row."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = classes(i, row) if classes else ""
        cells = "".join(
            f'<td class="num">{esc(fmt(v))}</td>'
            if isinstance(v, int | float)
            else f"<td>{esc(v)}</td>"
            for v in row
        )
        body.append(f'<tr class="{esc(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def figure(svg: str, caption: str = "") -> str:
    """A chart made by ``shipml.report.charts`` (already an ``<svg>`` element)."""
    cap = f"<figcaption class='meta'>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{svg}{cap}</figure>"


def png(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{encoded}">'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str]]) -> str:
    """The whole document: a title, a line under it, then (heading, HTML) sections."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may load from elsewhere: the page is viewed offline and shared as a file.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1><p class='meta'>{esc(subtitle)}</p>",
    ]
    parts += [f"<section><h2>{esc(h)}</h2>{body}</section>" for h, body in sections]
    parts.append("</body></html>")
    return "\n".join(parts)
