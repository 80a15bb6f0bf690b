"""Self-contained HTML reports: model cards and comparisons, charts inline (matplotlib
rendering SVG), viewable offline."""
