"""The monitoring report: ``monitor.json`` as one self-contained HTML file.

Per feature, the reference's and the window's distributions side by side; each test
with its statistic, threshold and verdict; drift and quality over the windows; missing
and unseen values; quality per slice. Built from the JSON alone, so a report can be
re-rendered from an attached ``monitor.json``.
"""

from __future__ import annotations

from typing import Any

from shipml.report import charts
from shipml.report.html import Markup, number, page, table, tag

REPORT = "monitor.html"
# A chart takes matplotlib ~40 ms and ~20 kB: 5,000 features drew for minutes into a page
# of 100+ MB. The most drifted are drawn; the tables list every feature.
MAX_CHARTS = 24  # feature histograms
MAX_SERIES = 8  # features over time (one colour each)


def most_drifted(features: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` features, the drifted first, each group in the page's order."""
    return sorted(features, key=lambda f: not f["drifted"])[:limit]


def _not_drawn(shown: int, total: int, what: str) -> list[Markup]:
    if shown >= total:
        return []
    note = f"{total - shown} more {what} not drawn: the tables list every feature."
    return [tag("p", note, class_="meta")]


def _verdict(ok: bool) -> Markup:
    return tag("span", "ok" if ok else "breach", class_="badge" if ok else "badge bad")


def _quality_verdict(v: dict[str, Any]) -> str:
    if not v["judged"]:
        return "not judged"
    if v["breached"]:
        return "breach"
    return "ok" if v.get("p_value") is None else "ok: a loss chance gives"


def _test_cell(test: dict[str, Any] | None) -> str:
    if not test:
        return "not judged"
    op = "<" if test["kind"] == "p_value" else "≥"
    return f"{test['method']} {number(test['statistic'], 3)} (drift if {op} {test['threshold']:g})"


def _feature_rows(features: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for f in features:
        flags = ", ".join(f["flags"]) or "–"
        rows.append(
            [
                f["name"],
                "numeric" if f["numeric"] else "categorical",
                f["rows"],
                _test_cell(f["test"]),
                number(f["psi"]["statistic"], 3) if f.get("psi") else "–",
                f"{f['reference_missing_share']:.1%} → {f['missing_share']:.1%}",
                f"{f['unseen_share']:.1%}" if not f["numeric"] else "–",
                f"{f['out_of_range_share']:.1%}" if f["numeric"] else "–",
                tag("span", flags, class_="bad" if f["flags"] else None),
            ]
        )
    return rows


def _histograms(drift: dict[str, Any]) -> Markup:
    cards = []
    drawn = most_drifted(drift["features"], MAX_CHARTS)
    entries = drawn + ([drift["prediction"]] if drift.get("prediction") else [])
    for f in entries:
        name = "prediction" if f is drift.get("prediction") else f["name"]
        verdict = "drifted" if f["drifted"] else "no drift"
        chart = charts.compare_bars(
            f["labels"], f["reference_shares"], f["current_shares"], title=f"{name}: {verdict}"
        )
        cards.append(tag("div", Markup(chart), class_="card", data_feature=name))
    more = _not_drawn(len(drawn), len(drift["features"]), "features'")
    return tag("div", tag("div", *cards, class_="grid"), *more)


def _over_time(windows: list[dict[str, Any]], quality: bool) -> Markup:
    if len(windows) < 2:
        return tag(
            "p", "One window: give --window to see drift and quality over time.", class_="meta"
        )
    x = [w["start"] or w["first"] or str(i) for i, w in enumerate(windows)]
    x = [s[:16].replace("T", " ") for s in x]
    every = sorted({n for w in windows for n in w["features"]})
    drifts = {n: sum(bool(w["features"].get(n, {}).get("drifted")) for w in windows) for n in every}
    names = sorted(every, key=lambda n: -drifts[n])[:MAX_SERIES]  # the most often drifted
    series = {n: [w["features"].get(n, {}).get("statistic") for w in windows] for n in names}
    parts: list[Any] = [
        Markup(charts.lines(x, series, title="drift statistic per window", ylabel="statistic")),
        *_not_drawn(len(names), len(every), "features' lines"),
    ]
    shares = {"share of drifted features": [w["drift_share"] for w in windows]}
    parts.append(Markup(charts.lines(x, shares, title="share of drifted features", ylabel="share")))
    metrics = sorted({m for w in windows for m in w["quality"]})
    if quality and metrics:
        q = {m: [w["quality"].get(m) for w in windows] for m in metrics}
        parts.append(Markup(charts.lines(x, q, title="quality per window (feedback labels)")))
    rows = [
        [
            x[i],
            w["rows"],
            w["labelled"],
            f"{w['drift_share']:.2f}",
            "yes" if w["dataset_drift"] else "no",
        ]
        for i, w in enumerate(windows)
    ]
    parts.append(
        table(
            ["window", "rows", "labelled", "drift share", "dataset drift"], rows, numeric=(1, 2, 3)
        )
    )
    return tag("div", *(tag("div", p, class_="card") for p in parts))


def _quality(quality: dict[str, Any]) -> Markup:
    if not quality["labelled"]:
        return tag(
            "p",
            "No feedback labels in this period: send them to the gateway's /v1/feedback "
            "(or give --data a file with the label column).",
            class_="meta",
        )
    rows = [
        [
            v["metric"],
            number(v["value"]),
            number(v["holdout"]),
            number(v["bound"]),
            "" if v.get("p_value") is None else number(v["p_value"]),
            _quality_verdict(v),
        ]
        for v in quality["verdicts"]
    ]
    parts: list[Any] = [
        tag(
            "p",
            f"{quality['labelled']} labelled predictions; the hold-out has "
            f"{quality['holdout_rows']} rows.",
            class_="meta",
        ),
        table(
            ["metric", "now", "hold-out", "bound", "p by chance", "verdict"],
            rows,
            numeric=(1, 2, 3, 4),
        ),
    ]
    for name, groups in quality["slices"].items():
        metrics = sorted({m for g in groups.values() for m in g if m != "labelled"})
        slice_rows = [
            [k, g["labelled"], *(number(g.get(m)) for m in metrics)] for k, g in groups.items()
        ]
        parts.append(tag("h3", f"by {name}"))
        parts.append(
            table(
                [name, "labelled", *metrics], slice_rows, numeric=tuple(range(1, len(metrics) + 2))
            )
        )
    return tag("div", *parts)


def _missing(features: list[dict[str, Any]]) -> Markup:
    rows = []
    for f in features:
        five = list(f["unseen"].items())[:5]
        unseen = ", ".join(f"{charts.short(k, 60)} ({v})" for k, v in five) or "–"
        rows.append(
            [f["name"], f"{f['reference_missing_share']:.1%}", f"{f['missing_share']:.1%}", unseen]
        )
    return table(["feature", "missing (reference)", "missing (now)", "unseen values"], rows)


def render(result: dict[str, Any]) -> str:
    """The report of one monitoring pass (``MonitorResult.to_dict()``)."""
    drift, quality = result["drift"], result["quality"]
    period = result["period"]
    subtitle = (
        f"{result['rows']} rows from {result['source']} · "
        f"{(period['first'] or '?')[:19]} → {(period['last'] or '?')[:19]} · "
        f"window {result['window']}"
    )
    summary: list[Any] = [
        tag(
            "p",
            _verdict(not result["breached"]),
            " ",
            f"{len(drift['drifted_features'])} of {len(drift['features'])} features drifted "
            f"(share {drift['drift_share']:.2f}, dataset drift at ≥ "
            f"{drift['drift_share_threshold']})",
        ),
    ]
    if result["breaches"]:
        summary.append(tag("ul", *(tag("li", b) for b in result["breaches"]), class_="breaches"))
    prediction = drift.get("prediction")
    pred_rows = _feature_rows([prediction]) if prediction else []
    headers = [
        "feature",
        "type",
        "rows",
        "test",
        "PSI",
        "missing",
        "unseen",
        "out of range",
        "flags",
    ]
    return page(
        f"Monitoring {result['model']} version {result['version']}",
        *summary,
        tag("h2", "Drift per feature"),
        table(headers, _feature_rows(drift["features"]), numeric=(2,), id="features"),
        tag("h2", "Prediction drift"),
        table(headers, pred_rows, numeric=(2,))
        if pred_rows
        else tag("p", "No prediction reference.", class_="meta"),
        tag("h2", "Reference and current distributions"),
        _histograms(drift),
        tag("h2", "Over time"),
        _over_time(result["windows"], True),
        tag("h2", "Quality from feedback"),
        _quality(quality),
        tag("h2", "Missing and unseen values"),
        _missing(drift["features"]),
        subtitle=subtitle,
        footer=f"shipml monitor · {result['created']} · methods and thresholds: docs/monitoring.md",
    )
