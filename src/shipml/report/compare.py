"""`shipml compare A B [C ...]`: runs or model versions side by side.

Each subject is an MLflow run id or a model reference. Shown: parameters (only those
that differ, unless asked), metrics with their deltas against the first, dataset
digests (same data or not), code commits and the diff of the project's Python files
between them, test results, slice metrics and, when the subjects are model packages
with labelled held-out rows, ROC and precision-recall curves, confusion matrices and
calibration, drawn by matplotlib.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import RegistryError
from shipml.files import finite_json
from shipml.report import charts, html
from shipml.testing.runner import version_results
from shipml.tracking import Registry, VersionInfo, parse_model_ref, tracker_for
from shipml.tracking.store import run_metrics

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_DIFF_CHARS = 20_000
# A column per subject: 10,000 run ids made a page of 10,000 columns after minutes of
# reading runs (and a git diff per commit); past a hundred no one reads the table.
MAX_SUBJECTS = 100


@dataclass
class Entry:
    label: str
    run_id: str
    version: VersionInfo | None
    params: dict[str, str]
    metrics: dict[str, float]
    datasets: dict[str, str]
    commit: str
    tests: dict[str, Any] | None = None
    predictions: dict[str, Any] | None = None  # y, labels, proba, classes, task


@dataclass
class Comparison:
    entries: list[Entry]
    params: dict[str, list[str | None]] = field(default_factory=dict)
    all_params: dict[str, list[str | None]] = field(default_factory=dict)
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    datasets: dict[str, list[str | None]] = field(default_factory=dict)
    code_diff: str = ""

    @property
    def same_data(self) -> bool:
        return all(len(set(v)) == 1 for v in self.datasets.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "subjects": [
                {
                    "label": e.label,
                    "run_id": e.run_id,
                    "version": e.version.ref if e.version else None,
                    "commit": e.commit,
                    "datasets": e.datasets,
                    "tests": (e.tests or {}).get("suites"),
                }
                for e in self.entries
            ],
            "params": self.params,
            "metrics": self.metrics,
            "deltas": {k: deltas(v) for k, v in self.metrics.items()},
            "datasets": self.datasets,
            "same_data": self.same_data,
            "code_diff": self.code_diff,
        }


def deltas(values: list[float | None]) -> list[float | None]:
    first = values[0]
    return [None if v is None or first is None else v - first for v in values]


def entry(config: ProjectConfig, ref: str, *, predictions: bool = True) -> Entry:
    tracker = tracker_for(config)
    version: VersionInfo | None = None
    if RUN_ID.match(ref):
        run_id = ref
    else:
        version = Registry(tracker).resolve(parse_model_ref(ref))
        if not version.run_id:
            raise RegistryError(f"{ref} was registered without a run", hint="compare runs instead")
        run_id = version.run_id
    try:
        run = tracker.client.get_run(run_id)
    except Exception as exc:  # MLflow: not found, or a malformed id
        raise RegistryError(
            f"no run {ref[:40]!r} in the store", hint="give a run id or NAME@ALIAS / NAME/VERSION"
        ) from exc
    tags = run.data.tags
    datasets = {
        k[len("shipml.dataset.") : -len(".sha256")]: v
        for k, v in tags.items()
        if k.startswith("shipml.dataset.") and k.endswith(".sha256")
    }
    e = Entry(
        label=ref,
        run_id=run_id,
        version=version,
        params=dict(run.data.params),
        metrics=run_metrics(run),
        datasets=datasets,
        commit=tags.get("mlflow.source.git.commit", ""),
        tests=version_results(version.tags) if version else None,
    )
    if version is not None and predictions:
        e.predictions = holdout_predictions(config, version.ref)
    return e


def holdout_predictions(config: ProjectConfig, ref: str) -> dict[str, Any] | None:
    """The package's held-out labels and its predictions through the serving path."""
    from shipml.testing.subject import Subject

    try:
        subject = Subject.load(config, ref)
        X, y = subject.holdout
        labels, proba = subject.predict(X)
    except Exception:  # no labels, an unloadable package: nothing to draw
        return None
    classes = list(subject.signature.classes) if subject.task == "classification" else []
    return {
        "task": subject.task,
        "y": list(y),
        "labels": list(labels),
        "proba": proba,
        "classes": classes,
    }


def check_subjects(refs: list[str]) -> None:
    """Two to ``MAX_SUBJECTS`` references, or a ``RegistryError`` before any is read."""
    if len(refs) < 2:
        raise RegistryError("compare needs at least two runs or models", hint="give A B [C ...]")
    if len(refs) > MAX_SUBJECTS:
        raise RegistryError(
            f"compare takes at most {MAX_SUBJECTS} runs or models ({len(refs):,} given)",
            hint="compare the few that matter (e.g. the best trials of a study)",
        )


def compare(config: ProjectConfig, refs: list[str], *, predictions: bool = True) -> Comparison:
    check_subjects(refs)
    entries = [entry(config, r, predictions=predictions) for r in refs]
    result = Comparison(entries)
    names = sorted({k for e in entries for k in e.params})
    for k in names:
        values = [e.params.get(k) for e in entries]
        result.all_params[k] = values
        if len(set(values)) > 1:
            result.params[k] = values
    for k in sorted({k for e in entries for k in e.metrics}):
        result.metrics[k] = [e.metrics.get(k) for e in entries]
    for k in sorted({k for e in entries for k in e.datasets}):
        result.datasets[k] = [e.datasets.get(k) for e in entries]
    result.code_diff = code_diff(config, [e.commit for e in entries])
    return result


def code_diff(config: ProjectConfig, commits: list[str]) -> str:
    """``git diff`` of the project's Python files between the first commit and each other."""
    known = [c for c in commits if c]
    if len(set(known)) < 2:
        return ""
    out: list[str] = []
    for other in dict.fromkeys(known[1:]):
        if other == known[0]:
            continue
        if sum(map(len, out)) >= MAX_DIFF_CHARS:  # all that is shown: no more git runs
            break
        proc = subprocess.run(
            ["git", "diff", "--no-color", known[0], other, "--", "*.py", "shipml.toml"],
            cwd=config.root,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        out.append(proc.stdout if proc.returncode == 0 else f"(no diff: {proc.stderr.strip()})")
    return "\n".join(out)[:MAX_DIFF_CHARS]


# -- rendering -------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    return html.number(v) if v is not None else "–"


_MARKDOWN = re.compile(r"([\\`*_\[\]()!|#~])")


def md(value: Any) -> str:
    """``value`` as text in a markdown table cell: a CI job summary renders markdown and
    HTML, so a parameter ``<img src=https://...>`` or ``[approve](https://...)`` showed
    an image or a link there, and a ``|`` or a line break broke the table."""
    text = " ".join(str(value).split())
    return html.text(_MARKDOWN.sub(r"\\\1", text))


def markdown(c: Comparison) -> str:
    heads = [md(e.label) for e in c.entries]
    lines = ["| parameter | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    lines += [
        f"| {md(k)} | " + " | ".join(md(_fmt(v)) for v in vs) + " |" for k, vs in c.params.items()
    ]
    lines += ["", "| metric | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for k, vs in c.metrics.items():
        ds = deltas(vs)
        cells = [_fmt(vs[0])] + [
            f"{_fmt(v)} ({d:+.4g})" if d is not None else _fmt(v)
            for v, d in zip(vs[1:], ds[1:], strict=True)
        ]
        lines.append(f"| {md(k)} | " + " | ".join(cells) + " |")
    data = "the same data" if c.same_data else "DIFFERENT data"
    lines += ["", f"Datasets: {data}."]
    return "\n".join(lines) + "\n"


def _curve_charts(c: Comparison) -> list[str]:
    import numpy as np
    from sklearn import metrics as m
    from sklearn.calibration import calibration_curve

    out: list[str] = []
    preds = [(e.label, e.predictions) for e in c.entries if e.predictions]
    classified = [(label, p) for label, p in preds if p["task"] == "classification"]
    if not classified:
        return out
    roc, pr, cal = {}, {}, {}
    for label, p in classified:
        if p["proba"] is None or len(p["classes"]) < 2:
            continue
        positive = p["classes"][-1]
        truth = np.asarray([str(v) == str(positive) for v in p["y"]])
        score = np.clip(np.asarray(p["proba"])[:, -1], 0.0, 1.0)  # ONNX floats: 1.0000003
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = m.roc_curve(truth, score)
        prec, rec, _ = m.precision_recall_curve(truth, score)
        frac, mean = calibration_curve(truth, score, n_bins=8, strategy="quantile")
        roc[label], pr[label], cal[label] = (fpr, tpr), (rec, prec), (mean, frac)
    if roc:
        cls = classified[0][1]["classes"][-1]
        out.append(
            html.figure(
                charts.curves(
                    roc,
                    title=f"ROC ({cls} vs rest)",
                    xlabel="false positive rate",
                    ylabel="true positive rate",
                    diagonal=True,
                )
            )
        )
        out.append(
            html.figure(
                charts.curves(
                    pr, title=f"precision-recall ({cls})", xlabel="recall", ylabel="precision"
                )
            )
        )
        out.append(
            html.figure(
                charts.curves(
                    cal, title="calibration", xlabel="predicted", ylabel="observed", diagonal=True
                )
            )
        )
    for label, p in classified:
        classes = [str(x) for x in p["classes"]]
        matrix = m.confusion_matrix(
            [str(v) for v in p["y"]], [str(v) for v in p["labels"]], labels=classes
        )
        out.append(html.figure(charts.matrix(matrix.tolist(), classes, title=label)))
    return out


def to_html(c: Comparison) -> str:
    heads = [e.label for e in c.entries]
    sections = _run_sections(c, heads) + _test_sections(c, heads)
    figures = _curve_charts(c)
    if figures:
        sections.append(
            ("Hold-out predictions", "<div class='charts'>" + "".join(figures) + "</div>")
        )
    title = "Comparison: " + " · ".join(e.label for e in c.entries)
    return html.page(title, *html.sections(sections), subtitle=f"{len(c.entries)} subjects")


def _run_sections(c: Comparison, heads: list[str]) -> list[tuple[str, str]]:
    """Parameters, metrics, data and code, one column per subject."""
    sections: list[tuple[str, str]] = []
    params = c.params or {}
    sections.append(
        (
            "Parameters that differ",
            html.table(["parameter", *heads], [[k, *map(_fmt, v)] for k, v in params.items()])
            if params
            else "<p class='note'>none: the same parameters</p>",
        )
    )
    rows = []
    for k, vs in c.metrics.items():
        ds = deltas(vs)
        rows.append(
            [
                k,
                _fmt(vs[0]),
                *[
                    f"{_fmt(v)} ({d:+.4g})" if d is not None else _fmt(v)
                    for v, d in zip(vs[1:], ds[1:], strict=True)
                ],
            ]
        )
    sections.append(("Metrics (delta against the first)", html.table(["metric", *heads], rows)))
    data_rows = [[k, *[(v or "–")[:16] for v in vs]] for k, vs in c.datasets.items()]
    verdict = "the same data" if c.same_data else "different data"
    sections.append(
        (
            "Data",
            f"<p>{html.text(verdict)}</p>" + html.table(["dataset (sha256)", *heads], data_rows),
        )
    )
    commits = [[e.label, e.commit[:12] or "–", e.run_id] for e in c.entries]
    code = (
        f"<pre>{html.text(c.code_diff)}</pre>"
        if c.code_diff
        else ("<p class='note'>no change to the project's code between them</p>")
    )
    sections.append(("Code", html.table(["subject", "commit", "run"], commits) + code))
    return sections


def _test_sections(c: Comparison, heads: list[str]) -> list[tuple[str, str]]:
    """The test suites' verdicts and, when recorded, the metrics of slices."""
    sections: list[tuple[str, str]] = []
    suites = sorted({s for e in c.entries for s in ((e.tests or {}).get("suites") or {})})
    test_rows = [
        [s, *[((e.tests or {}).get("suites") or {}).get(s, "–") for e in c.entries]] for s in suites
    ]
    sections.append(
        (
            "Tests",
            html.table(["suite", *heads], test_rows)
            if test_rows
            else "<p class='note'>not tested</p>",
        )
    )
    slices = sorted(
        {k for e in c.entries for k in ((e.tests or {}).get("metrics") or {}) if "slice" in k}
    )
    if slices:
        metrics = [((e.tests or {}).get("metrics") or {}) for e in c.entries]
        rows = [[k, *[_fmt(m.get(k)) for m in metrics]] for k in slices]
        sections.append(("Slices", html.table(["metric", *heads], rows)))
    return sections


def to_json(c: Comparison) -> str:
    """The comparison as standard JSON: a metric logged as NaN or infinity (MLflow takes
    them) is ``null``, never the ``NaN`` that JSON parsers refuse."""
    return json.dumps(finite_json(c.to_dict()), indent=2, default=str, allow_nan=False)
