"""Charts as inline SVG, drawn by matplotlib (Agg, imported on first use).

An SVG string goes straight into a self-contained HTML page: no network, no script,
text kept as text. Every chart has ``role="img"`` and a title for screen readers, and
the class ``chart`` (browser tests count the drawn marks inside).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

REFERENCE = "#8a94a6"
CURRENT = "#2f6fde"
BAD = "#b42318"
PALETTE = ("#2f6fde", "#e07a1f", "#2a9d5b", "#b42318", "#7b4fc9", "#8c6d1f", "#d0457f", "#3a8fa8")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text
            "svg.hashsalt": "shipml",  # the same chart gives the same SVG
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any, title: str) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE
    label = escape(title, quote=True)
    return re.sub(
        r"<svg ",
        f'<svg class="chart" role="img" aria-label="{label}" ',
        text,
        count=1,
    )


def compare_bars(
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    title: str,
    width: float = 5.2,
) -> str:
    """Reference and current shares per bin or category, side by side."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width, 2.4))
    n = len(labels)
    xs = range(n)
    ax.bar([x - 0.2 for x in xs], reference, 0.4, label="reference", color=REFERENCE)
    ax.bar([x + 0.2 for x in xs], current, 0.4, label="current", color=CURRENT)
    ax.set_xticks(list(xs))
    rotate = 45 if n > 6 or max((len(s) for s in labels), default=0) > 8 else 0
    ax.set_xticklabels(
        [_short(s) for s in labels], rotation=rotate, ha="right" if rotate else "center"
    )
    ax.set_ylabel("share")
    ax.set_title(title, loc="left")
    ax.legend(frameon=False, fontsize=8)
    return _svg(fig, title)


def lines(
    x: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    ylabel: str = "",
    threshold: float | None = None,
    width: float = 7.0,
) -> str:
    """One line per series over ``x`` (gaps where a value is None); a dashed threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width, 2.6))
    for i, (name, values) in enumerate(series.items()):
        ys = [math.nan if v is None else float(v) for v in values]
        ax.plot(
            list(range(len(x))),
            ys,
            marker="o",
            ms=3,
            lw=1.4,
            label=name,
            color=PALETTE[i % len(PALETTE)],
        )
    if threshold is not None:
        ax.axhline(threshold, ls="--", lw=1, color=BAD, label=f"threshold {threshold:g}")
    step = max(1, len(x) // 8)
    ax.set_xticks(list(range(0, len(x), step)))
    ax.set_xticklabels([_short(s, 16) for s in x[::step]], rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    if series:
        ax.legend(frameon=False, fontsize=8, ncol=min(4, len(series) + 1))
    return _svg(fig, title)


def _short(text: str, limit: int = 14) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
