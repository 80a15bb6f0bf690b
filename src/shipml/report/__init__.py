"""Self-contained HTML reports: page helpers, inline SVG charts (matplotlib), and the
reports built from them (monitoring; experiments and comparisons)."""
