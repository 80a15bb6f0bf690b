"""One monitoring pass: rows streamed into windows, compared with the package's
reference, judged — drift of features and predictions, data integrity, and quality
from feedback against the hold-out's.

``monitor_rows`` is the library entry point (``shipml monitor`` calls it through
``shipml.project.monitor``); ``MonitorResult.to_dict`` is the ``monitor.json`` format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipml.config import MonitorSection
from shipml.data.drift import (
    DriftResult,
    Reference,
    Settings,
    Window,
    compare,
    reference_of,
)
from shipml.data.quality import Quality
from shipml.files import finite_json
from shipml.model import ModelPackage
from shipml.monitor.quality import SliceQuality, Slicer, judge_quality
from shipml.monitor.records import Batch
from shipml.monitor.window import Windows, WindowSpec

FORMAT = "shipml.monitor/1"
INTEGRITY = ("missing", "unseen", "out_of_range")


@dataclass
class Baseline:
    """What the package says "normal" is: its reference profile, its predictions on the
    hold-out rows, and its metrics there."""

    reference: Reference
    task: str
    metrics: dict[str, float]
    holdout_rows: int

    @classmethod
    def of(cls, package: ModelPackage) -> Baseline:
        signature = package.signature
        prediction = None
        metrics: dict[str, float] = {}
        rows = 0
        try:
            X, y = package.holdout()
            rows = len(X)
            predicted, _ = package.predict(X)
            prediction = reference_of("prediction", predicted)
            if y is not None:
                quality = Quality(signature.task)
                quality.add(y.tolist(), predicted.tolist())
                metrics = quality.metrics()
        except Exception:  # an old or skops package: no prediction reference, no metrics
            prediction = None
        try:
            profile = package.profile
        except (OSError, ValueError):
            profile = {}
        reference = Reference.from_profile(profile, signature.names, prediction)
        return cls(reference, signature.task, metrics, rows)


@dataclass
class MonitorResult:
    model: str
    version: str
    source: str
    window: str
    drift: DriftResult
    quality: dict[str, Any]
    windows: list[dict[str, Any]]
    breaches: list[str]
    first: datetime | None = None
    last: datetime | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    @property
    def rows(self) -> int:
        return self.drift.rows

    def to_dict(self) -> dict[str, Any]:
        """``monitor.json``: standard JSON, so a value that overflowed (a mean or an error
        of rows holding 1e308) is ``null``."""
        return finite_json(self._dict())

    def _dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "version": self.version,
            "created": self.created,
            "source": self.source,
            "period": {
                "first": self.first.isoformat() if self.first else None,
                "last": self.last.isoformat() if self.last else None,
            },
            "window": self.window,
            "rows": self.rows,
            "breached": self.breached,
            "breaches": self.breaches,
            "drift": self.drift.to_dict(),
            "quality": self.quality,
            "windows": self.windows,
        }


def monitor_rows(
    package: ModelPackage,
    batches: Iterable[Batch],
    *,
    model: str,
    version: str,
    source: str,
    settings: MonitorSection | None = None,
    window: WindowSpec | None = None,
    slices: list[str] | None = None,
) -> MonitorResult:
    """Stream ``batches`` into windows and judge them against the package's baseline."""
    section = settings or MonitorSection()
    spec = window or WindowSpec()
    baseline = Baseline.of(package)
    rules = Settings.from_config(section)
    windows = Windows(spec, baseline.reference, baseline.task)
    sliced = _slice_quality(package, baseline, slices or [])
    for batch in batches:
        windows.add(batch.columns, batch.predictions, batch.labels, batch.times)
        if batch.labels and sliced.slicers:
            sliced.add(batch.columns, batch.labels, batch.predictions)
    overall = Window(baseline.reference)
    quality = Quality(baseline.task)
    rows = []
    first = last = None
    for slot in windows.ordered():
        overall.merge(slot.drift)
        quality.merge(slot.quality)
        first = slot.first if first is None or (slot.first and slot.first < first) else first
        last = slot.last if last is None or (slot.last and slot.last > last) else last
        rows.append(_window_row(windows, slot, rules))
    drift = compare(overall, rules)
    quality_out = _quality(quality, baseline, section, sliced)
    return MonitorResult(
        model,
        version,
        source,
        spec.describe(),
        drift,
        quality_out,
        rows,
        breaches(drift, quality_out["verdicts"]),
        first,
        last,
    )


def _slice_quality(package: ModelPackage, baseline: Baseline, slices: list[str]) -> SliceQuality:
    profile_columns = _profile_columns(package)
    slicers = [
        Slicer(n, baseline.reference.features.get(n), _quartiles(profile_columns.get(n)))
        for n in slices
        if n in package.signature.names
    ]
    return SliceQuality(slicers, baseline.task)


def _quality(
    quality: Quality, baseline: Baseline, section: MonitorSection, sliced: SliceQuality
) -> dict[str, Any]:
    """Quality from feedback labels, judged against the hold-out's."""
    verdicts = judge_quality(
        quality,
        baseline.metrics,
        max_drop=section.max_quality_drop,
        min_labels=section.min_labels,
        alpha=section.quality_alpha,
    )
    return {
        "labelled": quality.n,
        "metrics": quality.metrics(),
        "holdout": baseline.metrics,
        "holdout_rows": baseline.holdout_rows,
        "verdicts": verdicts,
        "slices": sliced.to_dict(),
    }


def _window_row(windows: Windows, slot: Any, rules: Settings) -> dict[str, Any]:
    result = compare(slot.drift, rules)
    start = windows.start_of(slot)
    return {
        "start": start.isoformat() if start else None,
        "first": slot.first.isoformat() if slot.first else None,
        "last": slot.last.isoformat() if slot.last else None,
        "rows": slot.drift.rows,
        "dataset_drift": result.dataset_drift,
        "drift_share": result.drift_share,
        "features": {
            f.name: {
                "method": f.test.method if f.test else None,
                "statistic": f.test.to_dict()["statistic"] if f.test else None,
                "drifted": f.drifted,
                "flags": f.flags,
            }
            for f in result.features
        },
        "prediction_drifted": bool(result.prediction and result.prediction.drifted),
        "labelled": slot.quality.n,
        "quality": slot.quality.metrics(),
    }


def breaches(drift: DriftResult, verdicts: list[dict[str, Any]]) -> list[str]:
    """Why this pass breaches, one sentence each (empty: all is well)."""
    out = []
    judged = [f for f in drift.features if f.judged]
    if drift.dataset_drift:
        out.append(
            f"dataset drift: {len(drift.drifted)} of {len(judged)} features drifted "
            f"({', '.join(drift.drifted)}; share {drift.drift_share:.2f} >= {drift.threshold})"
        )
    p = drift.prediction
    if p is not None and p.drifted and p.test is not None:
        out.append(
            f"prediction drift: {p.test.method} {p.test.statistic:.3g} "
            f"({'<' if p.test.kind == 'p_value' else '>='} {p.test.threshold})"
        )
    for f in drift.features:
        for flag in f.flags:
            if flag == "missing":
                out.append(
                    f"{f.name}: {f.missing_share:.1%} missing (reference "
                    f"{f.reference_missing_share:.1%})"
                )
            elif flag == "unseen":
                names = ", ".join(list(f.unseen)[:3])
                out.append(f"{f.name}: {f.unseen_share:.1%} unseen categories ({names})")
            elif flag == "out_of_range":
                out.append(f"{f.name}: {f.out_of_range_share:.1%} outside the reference's range")
    for v in verdicts:
        if v["breached"]:
            chance = "" if v.get("p_value") is None else f"; by chance p = {v['p_value']:.2g}"
            out.append(
                f"quality: {v['metric']} {v['value']:.4g} beyond {v['bound']:.4g} "
                f"(hold-out {v['holdout']:.4g}{chance})"
            )
    return out


def _profile_columns(package: ModelPackage) -> dict[str, Any]:
    try:
        return dict(package.profile.get("columns") or {})
    except (OSError, ValueError):
        return {}


def _quartiles(column: dict[str, Any] | None) -> list[float]:
    qs = (column or {}).get("quantiles") or {}
    return [qs[k] for k in ("p25", "p50", "p75") if qs.get(k) is not None]
