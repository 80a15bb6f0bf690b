"""The server's live monitor: drift and quality of recent traffic, as gauges on
``/metrics`` (see ``LiveMonitor``)."""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Gauge,
)

from shipml.serving.metrics import CountedBy, ServerMetrics
from shipml.serving.pending import PendingRuns

log = logging.getLogger("shipml.serving")


class LiveMonitor:
    """Drift and quality of recent traffic, on ``/metrics``.

    The request path only appends, once per model run (the batcher calls ``observe``,
    whatever the requests in the run): the run's rows and predicted labels, as bytes
    (``serving/pending.py``); and, when feedback labels are joined, each answer's request
    id and prediction (``remember``). A thread
    counts the buffers into the current bucket of a rolling window (``window_s``, ten
    buckets; the counting is vectorised, ``shipml.data.drift``) as soon as ``DRAIN_AT``
    rows wait, so little is ever held; every ``interval_s`` it also compares the window
    with the package's reference and sets the gauges. When the audit log is on it also
    reads the feedback labels recorded since its last look and joins them to recent
    predictions (quality). If traffic outruns the thread, the oldest rows are dropped and
    counted (``shipml_monitor_dropped_rows_total``); the answers never wait.
    """

    BUCKETS = 10
    QUEUE = 100_000  # rows (runs, answers) waiting at most; beyond, the oldest are dropped
    # Rows waiting that wake the thread to count them before the interval. Each count is a
    # few hundred numpy calls whatever the rows, and each call that releases the GIL makes
    # the thread take it back from the event loop: 8192 at a time cost the answers less
    # than 1024 did (benchmarks/README.md); 8192 rows of 30 features are 1 MB.
    DRAIN_AT = 8192
    RECENT = 200_000  # predictions remembered for joining feedback labels

    def __init__(
        self,
        metrics: ServerMetrics,
        reference: Any,
        settings: Any,
        *,
        names: list[str],
        task: str,
        window_s: float = 300.0,
        interval_s: float = 5.0,
        feedback: Callable[[int], list[tuple[int, dict[str, Any]]]] | None = None,
        prediction_reference: Callable[[], Any] | None = None,
    ) -> None:
        from shipml.data.drift import Window

        self.metrics, self.reference, self.settings = metrics, reference, settings
        self.names, self.task = names, task
        self.window_s, self.interval_s = window_s, interval_s
        self.bucket_s = window_s / self.BUCKETS
        self.feedback = feedback
        self._prediction_reference = prediction_reference
        self.answered: deque[tuple[bytes, np.ndarray]] = deque()  # request ids, labels
        self.buckets: deque[tuple[float, Any, Any]] = deque()  # (start, Window, Quality)
        self.recent: dict[str, Any] = {}
        self._recent_order: deque[str] = deque()
        self._after = -1  # the last feedback record read
        self._stop = threading.Event()
        self._wake = threading.Event()
        # the request path's buffers (one append per model run); a full one wakes the thread
        self.pending = PendingRuns(
            len(names), drain_at=self.DRAIN_AT, limit=self.QUEUE, wake=self._wake.set
        )
        self._thread: threading.Thread | None = None
        self._window_type = Window
        self._gauges(metrics.registry)

    def _gauges(self, r: CollectorRegistry) -> None:
        self._drift_gauges(r)
        self._quality_gauges(r)

    def _drift_gauges(self, r: CollectorRegistry) -> None:
        m, v = self.metrics.model, self.metrics.version
        self.g_feature = Gauge(
            "shipml_feature_drift",
            "Drift statistic of each feature over the live window (p-value or distance, "
            "by method).",
            ["model", "version", "feature", "method"],
            registry=r,
        )
        self.g_detected = Gauge(
            "shipml_feature_drift_detected",
            "1 when the feature's drift test flags the live window.",
            ["model", "version", "feature"],
            registry=r,
        )
        self.g_share = Gauge(
            "shipml_drift_share",
            "Share of tested features that drift.",
            ["model", "version"],
            registry=r,
        ).labels(m, v)
        self.g_prediction = Gauge(
            "shipml_prediction_drift",
            "Drift statistic of the predictions (class shares or values) over the live window.",
            ["model", "version", "method"],
            registry=r,
        )
        self.g_prediction_detected = Gauge(
            "shipml_prediction_drift_detected",
            "1 when the predictions' drift test flags the live window.",
            ["model", "version"],
            registry=r,
        ).labels(m, v)

    def _quality_gauges(self, r: CollectorRegistry) -> None:
        m, v = self.metrics.model, self.metrics.version
        self.g_quality = Gauge(
            "shipml_quality",
            "Quality from feedback labels over the live window (accuracy, f1_macro; mae, rmse).",
            ["model", "version", "metric"],
            registry=r,
        )
        self.g_holdout = Gauge(
            "shipml_quality_holdout",
            "The package's quality on its hold-out rows (what shipml_quality is compared with).",
            ["model", "version", "metric"],
            registry=r,
        )
        self.g_labelled = Gauge(
            "shipml_quality_labelled",
            "Labelled predictions in the live window.",
            ["model", "version"],
            registry=r,
        ).labels(m, v)
        self.g_rows = Gauge(
            "shipml_monitor_window_rows",
            "Rows in the live drift window.",
            ["model", "version"],
            registry=r,
        ).labels(m, v)
        dropped = CountedBy(  # only grows: a counter, for rate() and increase()
            "shipml_monitor_dropped_rows",
            "Rows not counted because the drift thread fell behind.",
            {"model": m, "version": v},
            lambda: self.pending.dropped,
        )
        r.register(dropped)

    # -- the request path ----------------------------------------------------------------
    def observe(self, rows: Any, labels: np.ndarray) -> None:
        """Called once per model run (the batcher's ``on_scored``): ``PendingRuns.add``."""
        self.pending.add(rows, labels)

    @property
    def joins_feedback(self) -> bool:
        """Whether feedback labels are read (the audit log is on): then each answer's
        request id and prediction are remembered (``remember``)."""
        return self.feedback is not None

    def remember(self, request_id: bytes, labels: np.ndarray) -> None:
        """Called once per answered request when feedback is joined: one append."""
        answered = self.answered
        answered.append((request_id, labels))
        if len(answered) == self.DRAIN_AT:
            self._wake.set()
        elif len(answered) > self.QUEUE:
            answered.popleft()

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, daemon=True, name="shipml-live-drift"
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        from shipml.data import stattests

        stattests.warm_up()  # scipy imported now, not in the first update under traffic
        if self._prediction_reference is not None:
            try:
                self.reference.prediction, holdout = self._prediction_reference()
            except Exception:  # no hold-out rows to predict: no prediction drift
                log.warning("no prediction reference: prediction drift is not measured")
            else:
                m, v = self.metrics.model, self.metrics.version
                for metric, value in holdout.items():
                    self.g_holdout.labels(m, v, metric).set(value)
        due = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if time.monotonic() >= due:
                    due = time.monotonic() + self.interval_s
                    self.refresh()
                else:  # DRAIN_AT rows waiting: count them, score at the interval
                    self._drain(self._bucket(time.time())[1])
            except Exception:  # the scores stay as they were; the server keeps serving
                log.exception("live drift update failed")

    def _bucket(self, now: float) -> tuple[float, Any, Any]:
        """The rolling window's current bucket (the expired ones forgotten)."""
        from shipml.data.drift import Window
        from shipml.data.quality import Quality

        start = now - now % self.bucket_s
        if not self.buckets or self.buckets[-1][0] != start:
            self.buckets.append((start, Window(self.reference), Quality(self.task)))
        while self.buckets and self.buckets[0][0] <= now - self.window_s:
            self.buckets.popleft()
        return self.buckets[-1]

    def refresh(self, now: float | None = None) -> None:
        """Count what was queued, read new feedback, update every gauge."""
        from shipml.data.drift import Window, compare
        from shipml.data.quality import Quality

        now = time.time() if now is None else now
        _, window, quality = self._bucket(now)
        self._drain(window)
        if self.feedback is not None:
            self._read_feedback(quality)
        total, labelled = Window(self.reference), Quality(self.task)
        for _, w, q in self.buckets:
            total.merge(w)
            labelled.merge(q)
        self._publish(compare(total, self.settings), labelled)

    def _drain(self, window: Any) -> None:
        self._remember_answered()
        flat, labels, others = self.pending.take()
        if labels is not None:
            self._count(window, flat, labels)
        if not others:
            return
        parts = [rows for rows, _ in others]
        predicted = np.concatenate([labels for _, labels in others])
        if all(p.matrix is not None for p in parts):
            self._count(window, np.concatenate([p.matrix for p in parts]), predicted)
            return
        columns = {
            n: np.concatenate([p.column(n, i) for p in parts]) for i, n in enumerate(self.names)
        }
        window.add(columns, predicted, len(predicted))

    def _count(self, window: Any, flat: np.ndarray, labels: np.ndarray) -> None:
        """Count [rows, features] and their labels: as float64 (what the counting takes),
        a contiguous row per feature."""
        matrix = np.ascontiguousarray(flat.T, dtype=np.float64)
        window.add({n: matrix[i] for i, n in enumerate(self.names)}, labels, len(labels))

    def _remember_answered(self) -> None:
        """Predictions by request id, for feedback labels to join (the latest ``RECENT``)."""
        answered = self.answered
        for _ in range(len(answered)):
            rid, predicted = answered.popleft()
            key = rid.decode("latin-1")
            self.recent[key] = predicted[0] if len(predicted) == 1 else predicted
            self._recent_order.append(key)
        while len(self._recent_order) > self.RECENT:
            self.recent.pop(self._recent_order.popleft(), None)

    def _read_feedback(self, quality: Any) -> None:
        assert self.feedback is not None
        for seq, record in self.feedback(self._after):
            self._after = max(self._after, seq)
            predicted = self.recent.pop(str(record.get("request_id")), None)
            if predicted is None:
                continue
            truth = record.get("label")
            if isinstance(predicted, np.ndarray):
                quality.add(truth if isinstance(truth, list) else [truth], predicted.tolist())
            else:
                quality.add(
                    [truth], [predicted.item() if hasattr(predicted, "item") else predicted]
                )

    def _publish(self, result: Any, quality: Any) -> None:
        from shipml.data.drift import method_for

        m, v = self.metrics.model, self.metrics.version
        self.g_rows.set(result.rows)
        for f in result.features:
            test = f.test
            method = (
                test.method
                if test
                else method_for(self.reference.features[f.name], self.settings, f.name)
            )
            self.g_feature.labels(m, v, f.name, method).set(test.statistic if test else math.nan)
            self.g_detected.labels(m, v, f.name).set(1 if f.drifted else 0)
        self.g_share.set(result.drift_share)
        p = result.prediction
        if p is not None and p.test is not None:
            self.g_prediction.labels(m, v, p.test.method).set(p.test.statistic)
        self.g_prediction_detected.set(1 if p is not None and p.drifted else 0)
        self.g_labelled.set(quality.n)
        for metric, value in quality.metrics().items():
            self.g_quality.labels(m, v, metric).set(value)


FEEDBACK_READ = 10_000  # feedback records read at most per refresh (the rest: the next)


def _feedback_reader(
    audit_path: str, start: int = -1
) -> Callable[[int], list[tuple[int, dict[str, Any]]]]:
    """The audit log's feedback records after a position and after ``start`` (its last
    record when the server started: older labels are for answers it never gave), at
    most ``FEEDBACK_READ`` at a time, read by the monitor's thread."""
    from shipml.audit.database import Database, is_url
    from shipml.audit.log import scan

    path: Any = audit_path if is_url(audit_path) else Path(audit_path)
    holder: dict[str, Any] = {}

    def feedback(after: int) -> list[tuple[int, dict[str, Any]]]:
        if "db" not in holder:  # opened by the monitor's thread, used only there
            holder["db"] = Database(path)
        records: Any = scan(holder["db"], "feedback", after=max(after, start))  # a generator
        try:
            return list(itertools.islice(records, FEEDBACK_READ))
        finally:  # the cursor (and a PostgreSQL transaction) ends now
            records.close()

    return feedback


def live_monitor(
    metrics: ServerMetrics,
    predictor: Any,
    settings: Any,
    *,
    audit: Any = None,
) -> LiveMonitor | None:
    """The live monitor of a served package (``settings``: a MonitorSection), or None when
    it is off or the package has no reference profile. Feedback labels are read from the
    server's ``audit`` log (an AuditLog), those logged after the server started."""
    if not settings.live:
        return None
    from shipml.data.drift import Reference, Settings

    package = predictor.package
    try:
        profile = package.profile
    except (OSError, ValueError):
        profile = {}
    reference = Reference.from_profile(profile, predictor.names)
    if not reference.features:
        log.warning("the package has no reference profile: live drift is off")
        return None
    feedback = _feedback_reader(str(audit.path), audit.size - 1) if audit else None

    def prediction_reference() -> tuple[Any, dict[str, float]]:
        """The model's predictions on (up to 5000 of) its hold-out rows, and its metrics."""
        from shipml.data.drift import FeatureReference, reference_of
        from shipml.serving.holdout import holdout_predictions, holdout_predictions_aside

        if predictor.package.format == "onnx":  # profiled by the child: no pandas here
            _, quality, profile = holdout_predictions_aside(predictor.package.path)
            return FeatureReference.from_profile("prediction", profile), quality
        # A framework model: pandas and the framework are loaded in this process anyway.
        labels, quality = holdout_predictions(predictor)
        return reference_of("prediction", labels), quality

    return LiveMonitor(
        metrics,
        reference,
        Settings.from_config(settings),
        names=predictor.names,
        task=predictor.signature.task,
        window_s=settings.live_window_s,
        interval_s=settings.live_interval_s,
        feedback=feedback,
        prediction_reference=prediction_reference,
    )
