"""Self-contained HTML reports, viewable offline: one set of page helpers and inline SVG
charts (matplotlib), and the reports built from them (model cards, comparisons,
monitoring, the dashboard)."""
