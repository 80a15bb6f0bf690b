"""Charts as inline SVG, drawn by matplotlib (the project's one plotting library).

matplotlib is imported on first use, with its object API (``Figure``, no pyplot and no
global state) and the Agg-family SVG backend: no display, no network, and text drawn as
paths, so a chart looks the same wherever the page is opened. Each function returns an
``<svg>`` element ready to put in a page.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

PALETTE = ["#34507a", "#c06014", "#1f8a4c", "#8e24aa", "#c62828", "#00838f"]


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "shipml"  # stable ids: same data, same SVG
    matplotlib.rcParams["svg.fonttype"] = "path"
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, color="#e3e6eb", linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, list(axes)


def render(fig: Any) -> str:
    """The figure as an ``<svg>`` element (no XML prolog, no date)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "shipml"})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) if v is not None and math.isfinite(float(v)) else math.nan for v in values]


def line_chart(xs: Sequence[tuple[str, Sequence[float]]], y: Sequence[float], *, title: str) -> str:
    """One step line per x axis, side by side (the tuning curve against search time and
    against trials)."""
    fig, axes = _figure(3.6 * len(xs), 2.8, ncols=len(xs))
    for ax, (label, x) in zip(axes, xs, strict=True):
        ax.step(_finite(x), _finite(y), where="post", color=PALETTE[0], linewidth=1.6)
        ax.plot(_finite(x), _finite(y), "o", color=PALETTE[0], markersize=3)
        ax.set_xlabel(label)
        ax.set_title(title, fontsize=10)
    return render(fig)


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
    for i, (name, (x, y)) in enumerate(series.items()):
        ax.plot(_finite(x), _finite(y), color=PALETTE[i % len(PALETTE)], label=name, lw=1.5)
    if diagonal:
        ax.plot([0, 1], [0, 1], ls="--", color="#8a8f98", lw=0.8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.title.set_fontsize(10)
    if series:
        ax.legend(fontsize=7, frameon=False)
    return render(fig)


def matrix(values: Sequence[Sequence[float]], labels: Sequence[str], *, title: str) -> str:
    """A confusion matrix: true labels down, predicted across, counts in the cells."""
    n = len(labels)
    fig, (ax,) = _figure(1.2 + 0.55 * max(n, 2), 1.0 + 0.5 * max(n, 2))
    ax.grid(False)
    data = [[float(v) for v in row] for row in values]
    ax.imshow(data, cmap="Blues")
    peak = max((v for row in data for v in row), default=0.0)
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            color = "white" if peak and v > peak / 2 else "#1d2330"
            ax.text(j, i, f"{v:g}", ha="center", va="center", color=color, fontsize=8)
    short = [str(label)[:14] for label in labels]
    ax.set_xticks(range(n), short, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), short, fontsize=7)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    ax.title.set_fontsize(10)
    return render(fig)


def bars(values: dict[str, float], *, title: str) -> str:
    """Horizontal bars, one per name (metrics of a slice, feature importances)."""
    fig, (ax,) = _figure(4.2, 0.8 + 0.28 * max(len(values), 1))
    names = [str(k)[:30] for k in values]
    ax.barh(names, _finite(list(values.values())), color=PALETTE[0])
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
    return render(fig)
