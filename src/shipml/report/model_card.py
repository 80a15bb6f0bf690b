"""`shipml report REF`: a model card as one self-contained HTML file.

Purpose, data (source, digest, schema, profile), training parameters, hold-out metrics
with bootstrap confidence intervals, slices, tests and gates, lineage, the tuning curve
if the model was tuned, and known limits. The file is attached to the model version
(an artifact of its run, named by the version tag ``shipml.report``) and a markdown
summary can be appended to a CI job summary.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipml.config import ProjectConfig
from shipml.errors import DataError, ShipmlError
from shipml.files import output_file
from shipml.report import charts, html
from shipml.report.compare import Entry, entry, md
from shipml.tracking import Registry, tracker_for

TAG_REPORT = "shipml.report"
BOOTSTRAP = 200


@dataclass
class ModelCard:
    ref: str
    html: str
    markdown: str
    attached: str = ""


def intervals(p: dict[str, Any], seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Hold-out metrics with 95% bootstrap intervals (200 resamples of the rows)."""
    from sklearn import metrics as m

    y, labels = np.asarray(p["y"]), np.asarray(p["labels"])
    if p["task"] == "classification":
        y, labels = y.astype(str), labels.astype(str)
        fns = {
            "accuracy": lambda t, q: m.accuracy_score(t, q),
            "f1_macro": lambda t, q: m.f1_score(t, q, average="macro"),
        }
    else:
        y, labels = y.astype(float), labels.astype(float)
        fns = {
            "mae": lambda t, q: m.mean_absolute_error(t, q),
            "rmse": lambda t, q: float(np.sqrt(np.mean((t - q) ** 2))),
            "r2": lambda t, q: m.r2_score(t, q),
        }
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(BOOTSTRAP)]
    out = {}
    for name, fn in fns.items():
        stats = [float(fn(y[i], labels[i])) for i in draws]
        out[name] = (float(fn(y, labels)), *np.percentile(stats, [2.5, 97.5]).tolist())
    return out


def build(config: ProjectConfig, ref: str) -> ModelCard:
    e = entry(config, ref)
    if e.version is None:
        from shipml.errors import RegistryError

        raise RegistryError(
            f"{ref} is a run; a model card is for a model version",
            hint="give NAME@ALIAS or NAME/VERSION",
        )
    sections = [
        (
            "Purpose",
            f"<p>{html.text(config.project.description or config.project.name)}</p>"
            f"<p class='meta'>target <code>{html.text(config.model.target)}</code></p>",
        ),
        ("Data", _data(config, e)),
        ("Training parameters", html.table(["parameter", "value"], sorted(e.params.items()))),
        ("Metrics on the held-out rows", _metrics(e)),
        ("Tests and gates", _tests(config, e)),
        ("Lineage", _lineage(e)),
    ]
    tuning = _tuning(config, e)
    if tuning:
        sections.append(("Tuning", tuning))
    sections.append(("Known limits", _limits(config, e)))
    v = e.version
    page = html.page(
        f"Model card: {v.ref}",
        *html.sections(sections),
        subtitle=f"aliases: {', '.join(v.aliases) or 'none'} · run {e.run_id}",
    )
    return ModelCard(v.ref, page, _markdown(e))


def _data(config: ProjectConfig, e: Entry) -> str:
    from shipml.data import DatasetStore

    store = DatasetStore(config.artifact_root, config.root)
    parts = []
    for name, digest in e.datasets.items():
        try:  # the name is a run's tag, the catalog a shared file: anyone's to write
            snap = next((s for s in store.versions(name) if s.digest == digest), None)
        except DataError as exc:  # not a dataset name, a damaged catalog: the card still
            snap, why = None, f" ({exc.message})"
        else:
            why = ""
        if snap is None:
            parts.append(
                f"<p>{html.text(name)}: sha256 <code>{html.text(digest)}</code>{html.text(why)}</p>"
            )
            continue
        parts.append(
            f"<h3>{html.text(name)} v{html.text(snap.version)}</h3><p>{html.text(snap.rows)} "
            f"rows from <code>{html.text(_shown_source(snap.source))}</code>, sha256 "
            f"<code>{html.text(snap.digest)}</code></p>"
        )
        profile = snap.profile or {}
        cols = profile.get("columns") or {}
        rows = [
            [
                c["name"],
                c["type"],
                "yes" if c["nullable"] else "no",
                _profile_line(cols.get(c["name"]) or {}),
            ]
            for c in snap.schema
        ]
        parts.append(html.table(["column", "type", "nullable", "profile"], rows))
    return "".join(parts) or "<p class='note'>no dataset recorded</p>"


def _shown_source(uri: str) -> str:
    """A source as a page mailed around may show it: without ``user:password@`` and
    without its query (a presigned URL's signature, an API token)."""
    from shipml.data.bundle import public_uri

    try:
        shown = public_uri(str(uri))
    except ValueError:  # "http://[x": not a URI shipml wrote
        return "(not a URI)"
    return shown.split("?", 1)[0] + ("?…" if "?" in shown else "")


def _profile_line(col: dict[str, Any]) -> str:
    keys = ("null_fraction", "min", "max", "mean", "distinct")
    return ", ".join(f"{k} {html.number(col[k])}" for k in keys if k in col)


def _metrics(e: Entry) -> str:
    rows = [[k, v] for k, v in sorted(e.metrics.items())]
    out: str = html.table(["metric (logged by the run)", "value"], rows)
    if e.predictions:
        ci = intervals(e.predictions)
        out += html.table(
            ["metric", "value", "95% interval (bootstrap)"],
            [[k, v, f"{lo:.4g} – {hi:.4g}"] for k, (v, lo, hi) in ci.items()],
        )
        if e.predictions["task"] == "classification":
            from sklearn import metrics as m

            classes = [str(c) for c in e.predictions["classes"]]
            matrix = m.confusion_matrix(
                [str(v) for v in e.predictions["y"]],
                [str(v) for v in e.predictions["labels"]],
                labels=classes,
            )
            out += (
                "<div class='charts'>"
                + html.figure(charts.matrix(matrix.tolist(), classes, title="confusion matrix"))
                + "</div>"
            )
    return out


def _tests(config: ProjectConfig, e: Entry) -> str:
    record = e.tests
    if not record:
        return "<p class='note'>not tested yet (`shipml test`)</p>"
    suites = [[s, st] for s, st in sorted(record.get("suites", {}).items())]
    out: str = html.table(["suite", "status"], suites)
    slices = {k: v for k, v in (record.get("metrics") or {}).items() if "slice" in k}
    if slices:
        out += "<h3>Slices</h3>" + html.table(["metric", "value"], sorted(slices.items()))
    from shipml.testing.gates import evaluate

    assert e.version is not None
    registry = Registry(tracker_for(config))
    champ = registry.aliases(e.version.name).get("champion")
    champion = registry.resolve(f"{e.version.name}/{champ}") if champ else None
    gates = evaluate(config, e.version, champion)
    out += "<h3>Gates</h3>" + html.table(
        ["gate", "holds", "value", "needs"],
        [[g.name, "yes" if g.holds else "NO", g.value, g.bound] for g in gates],
    )
    return out


def _lineage(e: Entry) -> str:
    tags = e.version.tags if e.version else {}
    rows = [
        ["run", e.run_id],
        ["git commit", e.commit or "–"],
        ["model digest", tags.get("shipml.model_digest", "–")],
        ["ONNX sha256", tags.get("shipml.onnx_sha256", "–")],
        *[[f"dataset {k}", v] for k, v in e.datasets.items()],
    ]
    return html.table(["", ""], rows)


UNREADABLE = "<p class='note'>the version's tag {} is not one shipml wrote</p>"


def _tuning(config: ProjectConfig, e: Entry) -> str:
    """The tuning section, from the version's tag: anyone with the registry sets tags, so
    one that is not a tuning record is said, never a traceback instead of the card."""
    raw = (e.version.tags if e.version else {}).get("shipml.tune.record")
    if not raw:
        return ""
    try:
        return _tuning_section(config, json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError):
        return UNREADABLE.format("shipml.tune.record")


def _tuning_section(config: ProjectConfig, tune: dict[str, Any]) -> str:
    from shipml.pipeline.trials import read_record

    out: str = html.table(
        ["", ""],
        [
            ["study", tune["study"]],
            ["objective", f"{tune['direction']} {tune['metric']}"],
            ["trials complete", tune["trials_complete"]],
            ["winning trial", tune["trial"]],
            ["searched", ", ".join(tune["searched"])],
            ["not searched (fixed)", ", ".join(tune["fixed"]) or "–"],
        ],
    )
    record = read_record(tracker_for(config), tune["parent_run"])
    curve = (record or {}).get("curve") or []
    if curve:
        out += (
            "<div class='charts'>"
            + html.figure(
                charts.line_chart(
                    [
                        ("search time (s)", [p["elapsed"] for p in curve]),
                        ("trials finished", [p["trials"] for p in curve]),
                    ],
                    [p["best"] for p in curve],
                    title=f"best {tune['metric']} so far",
                ),
                "completeness versus time",
            )
            + "</div>"
        )
    return out


def _limits(config: ProjectConfig, e: Entry) -> str:
    notes = []
    if e.predictions:
        notes.append(
            f"Measured on {len(e.predictions['y'])} held-out rows: the intervals "
            "above show how much that number can move."
        )
    ranges = config.tests.data.ranges
    if ranges:
        notes.append(
            "Trained for inputs within: "
            + ", ".join(f"{k} {lo:g}–{hi:g}" for k, (lo, hi) in ranges.items())
            + "; outside them it "
            "extrapolates."
        )
    repro = (e.version.tags if e.version else {}).get("shipml.reproducibility")
    if repro:
        try:
            r = json.loads(repro)
            notes.append(
                f"Reproducibility: {r['status']} (metrics of two trainings with the "
                f"same seed differ by at most {float(r['max_difference']):.2g})."
            )
        except (ValueError, KeyError, TypeError):  # a tag anyone could have set
            notes.append("Reproducibility: the tag shipml.reproducibility is not shipml's.")
    if e.tests and e.tests.get("status") != "passed":
        notes.append(f"Its tests did not all pass ({e.tests.get('summary', '')}).")
    return "<ul>" + "".join(f"<li>{html.text(n)}</li>" for n in notes) + "</ul>"


def _markdown(e: Entry) -> str:
    assert e.version is not None
    # a CI job summary renders it: names, tags and records are text there (md)
    lines = [
        f"## Model card: {md(e.version.ref)}",
        "",
        f"aliases: {md(', '.join(e.version.aliases) or 'none')} · commit "
        f"{md((e.commit or '-')[:12])} · run {md(e.run_id)}",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {md(k)} | {v:.4g} |" for k, v in sorted(e.metrics.items())]
    if e.tests:
        suites = sorted(e.tests.get("suites", {}).items())
        lines += ["", "Tests: " + md(", ".join(f"{s} {st}" for s, st in suites))]
    return "\n".join(lines) + "\n"


def write_report(
    config: ProjectConfig,
    ref: str,
    output: Path,
    *,
    attach: bool = True,
    summary: Path | None = None,
) -> ModelCard:
    """Write the model card to ``output``, attach it to the version, and append its
    markdown summary to ``summary`` (a CI job summary) when given."""
    card = build(config, ref)
    write_atomic(output, card.html)
    if attach:
        registry = Registry(tracker_for(config))
        info = registry.resolve(card.ref)
        if info.run_id:
            tracker = registry.tracker
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / "model-card.html"
                copy.write_text(card.html, encoding="utf-8")
                tracker.client.log_artifact(info.run_id, str(copy), f"report/{info.version}")
            card.attached = (
                f"{tracker.artifact_uri(info.run_id)}/report/{info.version}/model-card.html"
            )
            registry.set_version_tag(info.name, info.version, TAG_REPORT, card.attached)
    if summary is not None:
        with summary.open("a", encoding="utf-8") as fh:
            fh.write(card.markdown + "\n")
    return card


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a device such as /dev/stdout is
    written into)."""
    try:
        with output_file(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except IsADirectoryError as exc:
        raise ShipmlError(
            f"{path} is a folder", hint=f"give a file name, e.g. {path / 'report.html'}"
        ) from exc
    except OSError as exc:
        raise ShipmlError(
            f"cannot write {path}: {exc.strerror or exc}", hint="check the path and the free space"
        ) from exc


def job_summary() -> Path | None:
    """The CI job summary file, when running in GitHub Actions (or `shipml ci run`)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    return Path(path) if path else None
