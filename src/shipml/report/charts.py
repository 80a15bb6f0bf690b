"""Charts as inline SVG, drawn by matplotlib (the project's one plotting library).

matplotlib is imported on first use, with its object API (``Figure``: no pyplot, no
global figure state, so the dashboard may draw from several threads) and its SVG
backend: no display, no network, no script. Text stays text (searchable, read by screen
readers), the same data gives the same SVG. Every chart is an ``<svg class="chart"
role="img">`` with its title as label (browser tests count the drawn marks inside), ready
to put in a page built with ``shipml.report.html``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

REFERENCE = "#8a94a6"
CURRENT = "#2f6fde"
BAD = "#b42318"
# Text from the data is cut to these: a class, a column or a run is anyone's to name, and
# every count drawn is a text element (1,000 classes: a million of them, minutes).
MAX_TITLE = 120  # characters of a chart's title
MAX_NAME = 40  # characters of a series' name in a legend
ANNOTATED = 25  # classes up to which a confusion matrix writes its counts
LABELLED = 60  # classes up to which each is named on the axes (else every k-th)
PALETTE = ("#2f6fde", "#e07a1f", "#2a9d5b", "#b42318", "#7b4fc9", "#8c6d1f", "#d0457f", "#3a8fa8")


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text
            "svg.hashsalt": "shipml",  # stable ids: the same chart gives the same SVG
            # Labels are data (categories, feature names): "$5-$10" is text, not maths,
            # and "$\\frac{$" must not stop the chart (mathtext raised ValueError).
            "text.parse_math": False,
            "font.size": 9,
        }
    )
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = list(fig.subplots(1, ncols, squeeze=False)[0])
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def render(fig: Any, title: str) -> str:
    """The figure as an ``<svg class="chart">`` element (no XML prolog, no date)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "shipml"})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE
    label = escape(title, quote=True)
    return svg.replace("<svg ", f'<svg class="chart" role="img" aria-label="{label}" ', 1)


def _finite(values: Sequence[float | None]) -> list[float]:
    out = []
    for v in values:
        f = math.nan if v is None else float(v)
        out.append(f if math.isfinite(f) else math.nan)
    return out


def short(text: str, limit: int = 14) -> str:
    """``text`` cut to ``limit`` characters (a label, a category value from the data)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compare_bars(
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    title: str,
    width: float = 5.2,
) -> str:
    """Reference and current shares per bin or category, side by side."""
    fig, (ax,) = _figure(width, 2.4)
    n = len(labels)
    xs = range(n)
    ax.bar([x - 0.2 for x in xs], reference, 0.4, label="reference", color=REFERENCE)
    ax.bar([x + 0.2 for x in xs], current, 0.4, label="current", color=CURRENT)
    ax.set_xticks(list(xs))
    rotate = 45 if n > 6 or max((len(s) for s in labels), default=0) > 8 else 0
    ax.set_xticklabels(
        [short(s) for s in labels], rotation=rotate, ha="right" if rotate else "center"
    )
    ax.set_ylabel("share")
    title = short(title, MAX_TITLE)
    ax.set_title(title, loc="left")
    ax.legend(frameon=False, fontsize=8)
    return render(fig, title)


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
    fig, (ax,) = _figure(width, 2.6)
    for i, (name, values) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        ax.plot(
            list(range(len(x))),
            _finite(values),
            marker="o",
            ms=3,
            lw=1.4,
            label=short(name, MAX_NAME),
            color=color,
        )
    if threshold is not None:
        ax.axhline(threshold, ls="--", lw=1, color=BAD, label=f"threshold {threshold:g}")
    step = max(1, len(x) // 8)
    ax.set_xticks(list(range(0, len(x), step)))
    ax.set_xticklabels([short(s, 16) for s in x[::step]], rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    title = short(title, MAX_TITLE)
    ax.set_title(title, loc="left")
    if series:
        ax.legend(frameon=False, fontsize=8, ncol=min(4, len(series) + 1))
    return render(fig, title)


def line_chart(xs: Sequence[tuple[str, Sequence[float]]], y: Sequence[float], *, title: str) -> str:
    """One step line per x axis, side by side (the tuning curve against search time and
    against trials)."""
    fig, axes = _figure(3.6 * len(xs), 2.8, ncols=len(xs))
    for ax, (label, x) in zip(axes, xs, strict=True):
        ax.grid(True, color="#e3e6eb", linewidth=0.6)
        ax.step(_finite(x), _finite(y), where="post", color=PALETTE[0], linewidth=1.6)
        ax.plot(_finite(x), _finite(y), "o", color=PALETTE[0], markersize=3)
        ax.set_xlabel(label)
        ax.set_title(title, fontsize=10)
    return render(fig, title)


def curves(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
) -> str:
    """Several named curves on one axis (ROC, precision-recall, calibration)."""
    fig, (ax,) = _figure(4.2, 3.4)
    ax.grid(True, color="#e3e6eb", linewidth=0.6)
    for i, (name, (x, y)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        ax.plot(_finite(x), _finite(y), color=color, label=short(name, MAX_NAME), lw=1.5)
    if diagonal:
        ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE, lw=0.8)
    title = short(title, MAX_TITLE)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.title.set_fontsize(10)
    if series:
        ax.legend(fontsize=7, frameon=False)
    return render(fig, title)


def matrix(values: Sequence[Sequence[float]], labels: Sequence[str], *, title: str) -> str:
    """A confusion matrix: true labels down, predicted across, counts in the cells (up to
    ``ANNOTATED`` classes; more are a heat map that keeps its size, every k-th named)."""
    n = len(labels)
    side = min(max(n, 2), ANNOTATED)
    fig, (ax,) = _figure(1.2 + 0.55 * side, 1.0 + 0.5 * side)
    data = [[float(v) for v in row] for row in values]
    ax.imshow(data, cmap="Blues")
    peak = max((v for row in data for v in row), default=0.0)
    for i, row in enumerate(data if n <= ANNOTATED else []):
        for j, v in enumerate(row):
            color = "white" if peak and v > peak / 2 else "#1d2330"
            ax.text(j, i, f"{v:g}", ha="center", va="center", color=color, fontsize=8)
    ticks = list(range(0, n, max(1, -(-n // LABELLED))))
    names = [short(labels[i]) for i in ticks]
    ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    title = short(title, MAX_TITLE)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    ax.title.set_fontsize(10)
    return render(fig, title)


def bars(values: dict[str, float], *, title: str) -> str:
    """Horizontal bars, one per name (metrics of a slice, feature importances)."""
    fig, (ax,) = _figure(4.2, 0.8 + 0.28 * max(len(values), 1))
    names = [short(k, 30) for k in values]
    ax.barh(names, _finite(list(values.values())), color=PALETTE[0])
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
    return render(fig, title)
