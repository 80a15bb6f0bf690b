"""The results of a test session: ``results.json`` (machine-readable) and ``report.html``
(one self-contained file: results, plots as inline SVG, screenshots as data URIs).

``junit.xml`` is pytest's own (xunit2, the Jenkins JUnit schema).
"""

from __future__ import annotations

import base64
import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipml import __version__
from shipml.files import finite_json, output_file
from shipml.testing.check import SUITES

RESULTS = "results.json"
REPORT = "report.html"
JUNIT = "junit.xml"


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per outcome, overall and per suite; a suite passed when nothing in it
    failed or errored and at least one test ran."""

    def counts(rs: list[dict[str, Any]]) -> dict[str, Any]:
        c = {
            k: sum(r["outcome"] == k for r in rs) for k in ("passed", "failed", "skipped", "error")
        }
        bad = c["failed"] + c["error"]
        status = "failed" if bad else ("passed" if c["passed"] else "skipped")
        return {"tests": len(rs), **c, "status": status}

    suites = {s: counts([r for r in records if r["suite"] == s]) for s in SUITES}
    return {"summary": counts(records), "suites": {k: v for k, v in suites.items() if v["tests"]}}


def flat_metrics(records: list[dict[str, Any]]) -> dict[str, float]:
    """``suite.metric`` for every number a test recorded (first one wins)."""
    out: dict[str, float] = {}
    for r in records:
        for key, value in r["metrics"].items():
            out.setdefault(f"{r['suite']}.{key}", value)
    return out


def write_results(
    folder: Path, records: list[dict[str, Any]], subject: Any, *, against: str | None = None
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    model: dict[str, Any] = {}
    if subject is not None:
        pkg = subject.package
        model = {
            "name": subject.name,
            "version": subject.version.version if subject.version else None,
            "ref": subject.label,
            "onnx_sha256": pkg.onnx_sha256,
            "model_digest": pkg.model_digest,
            "run_id": pkg.lineage.get("run_id"),
            "git_commit": (pkg.lineage.get("git") or {}).get("commit"),
        }
    results = {
        "format": "shipml-test-results-v1",
        "shipml": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "against": against,
        **summarize(records),
        "metrics": flat_metrics(records),
        "tests": records,
    }
    # JSON has no NaN or infinity (jq, browsers and Java reject them): they are null.
    text = json.dumps(finite_json(results), indent=2, default=_jsonable, allow_nan=False)
    _atomic(folder / RESULTS, text)
    _atomic(folder / REPORT, render_html(results, folder))
    return results


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _atomic(path: Path, text: str) -> None:
    with output_file(path) as tmp:  # whole or not at all, a stray partial never left
        # A message may hold a lone surrogate (text decoded with surrogateescape): written
        # as an escape, not a UnicodeEncodeError that loses the whole report.
        tmp.write_text(text, encoding="utf-8", errors="backslashreplace")


# -- HTML ------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;
padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .2rem} h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.meta{color:#5a6272;font-size:.9rem} code{background:#f1f3f6;padding:0 .25rem;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.4rem 0} td,th{padding:.3rem .5rem;
border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top} th{background:#f6f7f9}
.badge{display:inline-block;padding:0 .45rem;border-radius:9px;font-size:.8rem;color:#fff}
.passed{background:#1f8a4c}.failed{background:#c62828}.error{background:#8e24aa}
.skipped{background:#8a8f98} details{margin:.2rem 0} summary{cursor:pointer;color:#34507a}
.msg{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:.85rem}
img.shot{max-width:100%;border:1px solid #ccd;margin:.4rem 0}
.cards{display:flex;gap:.8rem;flex-wrap:wrap}.card{border:1px solid #e3e6eb;border-radius:8px;
padding:.6rem .9rem;min-width:120px}.card b{font-size:1.3rem;display:block}
"""


# The page runs no script and loads nothing: were a text ever let through unescaped, a
# browser would still not run it (test names and messages are anyone's in a team).
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)
MAX_TEXT = 20_000  # characters of one message (or name) shown; results.json has them all
MAX_IMAGE = 5_000_000  # bytes of one attached PNG inlined


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _clipped(value: Any, limit: int = MAX_TEXT) -> str:
    """``value`` escaped, cut to ``limit`` characters: one 50 MB assertion message made
    a 50 MB page that a browser (and a mail or CI artifact viewer) chokes on."""
    text = str(value)
    if len(text) <= limit:
        return _e(text)
    more = f" … ({len(text) - limit:,} more characters in {RESULTS})"
    return _e(text[:limit] + more)


def _badge(outcome: str) -> str:
    return f'<span class="badge {_e(outcome)}">{_e(outcome)}</span>'


def _bars(rows: list[dict[str, Any]]) -> str:
    """An inline SVG bar chart of the first numeric column of ``rows`` (if any)."""
    if not rows:
        return ""
    label_key = next(iter(rows[0]))
    numeric = [
        k
        for k, v in rows[0].items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k != label_key
    ]
    if not numeric:
        return ""
    key = numeric[-1] if "gap" in numeric[-1] or len(numeric) == 1 else numeric[0]
    values = [float(r.get(key) or 0.0) for r in rows[:30]]
    top = max((abs(v) for v in values if math.isfinite(v)), default=1.0) or 1.0
    height = 22 * len(values) + 10
    parts = [f'<svg width="640" height="{height}" role="img" aria-label="{_clipped(key, 200)}">']
    for i, (r, v) in enumerate(zip(rows[:30], values, strict=False)):
        y = 5 + i * 22
        w = 380 * abs(v) / top if math.isfinite(v) else 0.0
        color = "#c62828" if v < 0 else "#3f6fb5"
        parts.append(
            f'<text x="0" y="{y + 14}" font-size="12">{_e(str(r.get(label_key))[:28])}</text>'
            f'<rect x="200" y="{y + 2}" width="{w:.1f}" height="16" fill="{color}"/>'
            f'<text x="{206 + w:.1f}" y="{y + 14}" font-size="12">{v:.4g}</text>'
        )
    parts.append("</svg>")
    return f"<div><small>{_clipped(key, 200)}</small><br>{''.join(parts)}</div>"


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys: list[str] = []
    for r in rows[:200]:
        keys += [k for k in r if k not in keys]
    head = "".join(f"<th>{_clipped(k, 200)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_short(r.get(k, '')))}</td>" for k in keys) + "</tr>"
        for r in rows[:200]
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _image(path: str, folder: Path) -> str:
    file = Path(path) if Path(path).is_absolute() else folder / path
    if not file.is_file() or file.suffix.lower() != ".png":
        return f"<p>attachment: <code>{_clipped(path, 1000)}</code></p>"
    if file.stat().st_size > MAX_IMAGE:  # a page to mail, not an image store
        size = f"{file.stat().st_size / 1e6:.0f} MB, not shown"
        return f"<p>attachment: <code>{_clipped(path, 1000)}</code> ({size})</p>"
    data = base64.b64encode(file.read_bytes()).decode()
    return f'<img class="shot" alt="{_e(file.name)}" src="data:image/png;base64,{data}">'


def render_html(results: dict[str, Any], folder: Path) -> str:
    model = results.get("model") or {}
    summary = results["summary"]
    cards = "".join(
        f'<div class="card"><small>{_e(name)}</small><b>{_badge(s["status"])}</b>'
        f"{s['passed']} passed · {s['failed'] + s['error']} failed · {s['skipped']} skipped</div>"
        for name, s in results["suites"].items()
    )
    sections = []
    for suite in results["suites"]:
        rows = []
        for t in (t for t in results["tests"] if t["suite"] == suite):
            extra = ""
            if t["details"]:
                plot = _bars(t["details"])
                extra += f"<details{' open' if plot else ''}><summary>details</summary>{plot}"
                extra += f"{_table(t['details'])}</details>"
            extra += "".join(_image(a, folder) for a in t["attachments"])
            rows.append(
                f"<tr><td>{_badge(t['outcome'])}</td><td><b>{_clipped(t['check'] or t['name'])}"
                f"</b><br><small>{_clipped(t['title'])}</small></td><td><div class=msg>"
                f"{_clipped(t['message'])}"
                f"</div>{extra}</td><td>{t['duration']:.2f}s</td></tr>"
            )
        sections.append(
            f"<h2>{_e(suite)}</h2><table><tr><th></th><th>test</th><th>result</th>"
            f"<th>time</th></tr>{''.join(rows)}</table>"
        )
    metrics = _table([{"metric": k, "value": v} for k, v in sorted(results["metrics"].items())])
    title = f"shipml tests: {model.get('ref', 'model')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}"><title>{_clipped(title, 200)}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>
<body><h1>{_clipped(title, 200)} {_badge(summary["status"])}</h1>
<p class="meta">{summary["tests"]} tests: {summary["passed"]} passed, {summary["failed"]} failed,
{summary["error"]} errors, {summary["skipped"]} skipped · {_e(results["created"])} ·
shipml {_e(results["shipml"])}<br>ONNX sha256 <code>{_e(model.get("onnx_sha256") or "-")}</code>
· run <code>{_e(model.get("run_id") or "-")}</code> · commit
<code>{_e(model.get("git_commit") or "-")}</code>
{" · against <code>" + _e(results["against"]) + "</code>" if results.get("against") else ""}</p>
<div class="cards">{cards}</div>
{"".join(sections)}
<h2>metrics</h2>{metrics}
</body></html>
"""
