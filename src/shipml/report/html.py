"""Self-contained HTML pages: one file, inline CSS, charts inline as SVG, images as
``data:`` URIs, no script, nothing fetched from the network.

Every text is escaped (``text``) unless it is markup built here (``Markup``); a
Content-Security-Policy forbids loading anything, so a report opened offline shows
exactly what it holds. Every report (model card, comparison, monitoring, dashboard)
is built from these helpers and ``shipml.report.charts``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

# base-uri and form-action do not fall back to default-src: said apart.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

STYLE = """
:root{--ink:#1d2430;--muted:#5b6472;--line:#d9dee6;--accent:#2f6fde;--bad:#b42318;
  --good:#1a7f37;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--ink)}
body{margin:0;background:#f4f6f9}
main{max-width:72rem;margin:1.5rem auto;padding:1.5rem 2rem;background:#fff;
  border:1px solid var(--line);border-radius:10px}
h1{margin:0 0 .2rem;font-size:1.5rem} h2{margin:1.8rem 0 .6rem;font-size:1.15rem}
h3{margin:1rem 0 .3rem;font-size:1rem}
.meta{color:var(--muted);margin:0 0 1rem} .note{color:var(--muted);font-style:italic}
code{background:#f1f3f6;padding:0 .25rem;border-radius:3px}
pre{background:#f7f8fa;padding:.6rem;overflow:auto;font-size:.8rem;max-height:30rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{padding:.3rem .5rem;text-align:left;border-top:1px solid var(--line);vertical-align:top}
th{font-weight:600;background:#f7f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:var(--bad);font-weight:600} .good{color:var(--good)}
.badge{display:inline-block;padding:.1rem .55rem;border-radius:99px;font-weight:600;
  font-size:.85rem;color:#fff;background:var(--good)}
.badge.bad{background:var(--bad);color:#fff}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(30rem,1fr));gap:1rem}
.card{border:1px solid var(--line);border-radius:8px;padding:.6rem .8rem}
.charts{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.charts figure{margin:0}
svg.chart{max-width:100%;height:auto}
ul.breaches{margin:.3rem 0;padding-left:1.2rem;color:var(--bad)}
footer{margin-top:2rem;font-size:.8rem;color:var(--muted)}
"""


class Markup(str):
    """Text that is already HTML (built here, never from outside data)."""


def text(value: Any) -> Markup:
    """``value`` as escaped HTML, unless it already is markup."""
    if isinstance(value, Markup):
        return value
    return Markup(escape("" if value is None else str(value), quote=True))


def tag(name: str, *children: Any, **attrs: Any) -> Markup:
    """``<name attrs>children</name>``; attribute names use ``_`` for ``-`` and a trailing
    ``_`` for reserved words (``class_``)."""
    rendered = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{escape(str(v), quote=True)}"'
        for k, v in attrs.items()
        if v is not None and v is not False
    )
    return Markup(f"<{name}{rendered}>{''.join(text(c) for c in children)}</{name}>")


def number(value: Any, digits: int = 4) -> str:
    """A value for a table cell: floats to ``digits`` significant digits, None as –."""
    if value is None:
        return "–"
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.{digits}g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[int] | None = None,
    **attrs: Any,
) -> Markup:
    """A table. Numbers are formatted by ``number`` and right-aligned: the columns in
    ``numeric``, or (when it is not given) every cell holding an int or a float."""
    head = tag("tr", *(tag("th", h) for h in headers))
    body = []
    for row in rows:
        cells = []
        for j, cell in enumerate(row):
            right = j in numeric if numeric is not None else _is_number(cell)
            shown = number(cell) if _is_number(cell) else cell
            cells.append(tag("td", shown, class_="num" if right else None))
        body.append(tag("tr", *cells))
    return tag("table", tag("thead", head), tag("tbody", *body), **attrs)


def figure(svg: str, caption: str = "") -> Markup:
    """A chart made by ``shipml.report.charts`` (an ``<svg>`` element built here)."""
    return tag("figure", Markup(svg), tag("figcaption", caption, class_="meta") if caption else "")


def png(data: bytes, alt: str) -> Markup:
    """An image inlined as a data: URI (the page's CSP allows nothing else)."""
    encoded = base64.b64encode(data).decode("ascii")
    return Markup(f'<img alt="{escape(alt, quote=True)}" src="data:image/png;base64,{encoded}">')


def sections(parts: Iterable[tuple[str, str]]) -> list[Markup]:
    """``(heading, body)`` pairs as ``<section>`` elements. A body is HTML the report
    built itself (every value in it passed through ``text``, ``tag`` or ``table``)."""
    return [tag("section", tag("h2", heading), Markup(body)) for heading, body in parts]


def page(title: str, *body: Any, subtitle: str = "", footer: str = "") -> str:
    """A whole HTML document."""
    head = (
        '<meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style>"
    )
    main = tag(
        "main",
        tag("h1", title),
        tag("p", subtitle, class_="meta") if subtitle else "",
        *body,
        tag("footer", footer) if footer else "",
    )
    return f'<!DOCTYPE html><html lang="en"><head>{head}</head><body>{main}</body></html>\n'
