"""Charts draw any text from the data as that text: a label matplotlib would read as
mathtext (``$...$``) neither breaks the chart nor is typeset, and markup stays text."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from shipml.report import charts

HOSTILE = [
    "$\\frac{$",  # unbalanced mathtext: matplotlib raised ValueError while drawing
    "$x^{$",
    "price $5-$10",  # balanced: was typeset as maths, the dollars dropped
    "</svg><script>alert(1)</script>",
    "\u202eevil\x01",
]


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.seen.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _every_chart(label: str) -> list[str]:
    return [
        charts.compare_bars([label, "b"], [0.5, 0.5], [0.4, 0.6], title=f"{label}: drifted"),
        charts.lines(["2026-01-01", label], {label: [0.1, 0.2]}, title=label),
        charts.curves({label: ([0, 1], [0, 1])}, title=label, xlabel=label, ylabel="y"),
        charts.matrix([[1, 2], [3, 4]], [label, "b"], title=label),
        charts.bars({label: 0.5}, title=label),
        charts.line_chart([(label, [1.0, 2.0])], [0.1, 0.2], title=label),
    ]


@pytest.mark.parametrize("label", HOSTILE)
def test_text_from_the_data_is_drawn_as_text(label: str) -> None:
    for svg in _every_chart(label):
        parsed = _Elements()
        parsed.feed(svg)
        assert "script" not in parsed.seen
        if "$" in label:  # drawn as written (one chart shortens long labels)
            assert any(label[:10] in t for t in parsed.text), parsed.text


def test_a_confusion_matrix_of_many_classes_and_long_names_stays_small() -> None:
    """Each count was a text element and the figure grew with the classes: 120 classes
    took 18 s for 5.6 MB, 1,000 a million texts (minutes); a column named with 100,000
    characters made a 100,000-character title (seconds of layout each chart)."""
    n = 100
    counts = [[(i * j) % 7 for j in range(n)] for i in range(n)]
    svg = charts.matrix(counts, [f"class {i}" for i in range(n)], title="t" * 100_000)
    parsed = _Elements()
    parsed.feed(svg)
    drawn = [t for t in parsed.text if t.strip()]
    assert len(drawn) < 2 * n  # no count per cell; at most a name per class and axis
    assert len(svg) < 500_000
    assert max(map(len, drawn)) <= 120 and "t" * 121 not in svg
    wide = charts.lines(["a", "b"], {"x" * 100_000: [0.1, 0.2]}, title="y" * 100_000)
    assert "x" * 41 not in wide and "y" * 121 not in wide
