"""The live monitor on its own (no server): what the model runs queue is counted as the
window would count the same rows, a full queue wakes the counting thread, rows beyond
the queue's bound are dropped and counted on /metrics, and feedback labels are joined to
the remembered answers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import generate_latest

from shipml.data import table_profile
from shipml.data.drift import Reference, Settings, Window
from shipml.serving.live import LiveMonitor
from shipml.serving.metrics import ServerMetrics
from shipml.serving.validation import Rows
from tests.monitor.conftest import monitored_package, split  # noqa: F401  (a profiled package)


@pytest.fixture(scope="module")
def reference(cancer_data) -> Reference:
    X, _ = cancer_data
    return Reference.from_profile(table_profile(X), list(X.columns))


def _monitor(reference: Reference, names: list[str]) -> LiveMonitor:
    metrics = ServerMetrics("cancer", "1", "")
    return LiveMonitor(
        metrics, reference, Settings(), names=names, task="classification", interval_s=3600
    )


def _rows(cancer_data) -> np.ndarray:
    """The data set as float32 (what the server validates to), with NaN and ±inf rows."""
    X, _ = cancer_data
    matrix = X.to_numpy(dtype=np.float32).copy()
    matrix[0, 0], matrix[1, 3], matrix[2, 5] = np.nan, np.inf, -np.inf
    matrix[3, :] = matrix[:, :].max(axis=0) * 10  # above every reference range
    return matrix


def test_queued_requests_are_counted_as_the_window_counts_them(reference, cancer_data):
    X, _ = cancer_data
    names = list(X.columns)
    monitor = _monitor(reference, names)
    matrix = _rows(cancer_data)
    labels = (np.arange(len(matrix)) % 2).astype(np.int64)
    for i in range(len(matrix)):
        monitor.observe(Rows(1, matrix=matrix[i : i + 1]), labels[i : i + 1])
    monitor.refresh()

    expected = Window(reference)
    expected.add({n: matrix[:, i] for i, n in enumerate(names)}, labels, len(matrix))
    counted = Window(reference)
    for _, window, _ in monitor.buckets:
        counted.merge(window)
    assert not monitor.pending.buffered and counted.rows == expected.rows == len(matrix)
    for name in names:
        got, want = counted.features[name], expected.features[name]
        assert got.bins.tolist() == want.bins.tolist(), name
        assert got.missing == want.missing
        assert got.sum == pytest.approx(want.sum, rel=1e-12)
        assert got.outside == pytest.approx(want.outside, rel=1e-12)
    assert monitor.g_rows._value.get() == len(matrix)


def test_matrices_columns_and_other_dtypes_queued_together_are_all_counted(reference, cancer_data):
    X, _ = cancer_data
    names = list(X.columns)
    monitor = _monitor(reference, names)
    matrix = _rows(cancer_data)
    for i in range(0, 60, 3):  # a float32 matrix, a float64 one, one array per feature
        monitor.observe(Rows(1, matrix=matrix[i : i + 1]), np.array([0]))
        wide = matrix[i + 1 : i + 2].astype(np.float64)
        monitor.observe(Rows(1, matrix=wide), np.array([1]))
        columns = {n: matrix[i + 2 : i + 3, j] for j, n in enumerate(names)}
        monitor.observe(Rows(1, columns=columns), np.array([0]))
    monitor.refresh()

    expected = Window(reference)
    expected.add({n: matrix[:60, j] for j, n in enumerate(names)}, None, 60)
    (_, counted, _) = monitor.buckets[-1]
    assert counted.rows == 60
    for name in names:
        assert counted.features[name].bins.tolist() == expected.features[name].bins.tolist()
        assert counted.features[name].missing == expected.features[name].missing


def test_a_full_queue_wakes_the_thread_before_the_interval(reference, cancer_data):
    X, _ = cancer_data
    monitor = _monitor(reference, list(X.columns))
    monitor.pending.drain_at = 5
    matrix = _rows(cancer_data)
    monitor.start()
    try:
        for i in range(5):
            monitor.observe(Rows(1, matrix=matrix[i : i + 1]), np.array([0]))
        deadline = time.monotonic() + 10
        while (monitor.pending.buffered or not monitor.buckets) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not monitor.pending.buffered and sum(w.rows for _, w, _ in monitor.buckets) == 5
    finally:
        monitor.stop()


def test_rows_beyond_the_queue_are_dropped_and_counted(reference, cancer_data):
    X, _ = cancer_data
    monitor = _monitor(reference, list(X.columns))
    monitor.pending.limit = 10
    matrix = _rows(cancer_data)
    for i in range(15):  # 15 model runs of 2 rows: 30 rows, at most 10 held
        monitor.observe(Rows(2, matrix=matrix[i : i + 2]), np.array([0, 1]))
    assert monitor.pending.dropped > 0 and monitor.pending.buffered <= 10
    text = generate_latest(monitor.metrics.registry).decode()
    dropped = monitor.pending.dropped
    assert "# TYPE shipml_monitor_dropped_rows_total counter" in text  # only grows: rate() works
    assert f'shipml_monitor_dropped_rows_total{{model="cancer",version="1"}} {dropped}.0' in text
    monitor.refresh()
    assert monitor.g_rows._value.get() == 30 - dropped
    # the newest rows were kept, each with its own label
    sent = np.concatenate([matrix[i : i + 2] for i in range(15)])[dropped:]
    expected = Window(reference)
    expected.add({n: sent[:, j] for j, n in enumerate(X.columns)})
    (_, counted, _) = monitor.buckets[-1]
    for name in X.columns:
        assert counted.features[name].bins.tolist() == expected.features[name].bins.tolist()
    assert counted.prediction is None or counted.prediction.rows == 30 - dropped


def test_runs_of_another_kind_are_queued_as_they_are(reference, cancer_data):
    X, _ = cancer_data
    monitor = _monitor(reference, list(X.columns))
    monitor.pending.limit = 4
    matrix = _rows(cancer_data)
    for i in range(6):  # string labels: not the byte buffers' kind
        monitor.observe(Rows(1, matrix=matrix[i : i + 1]), np.array(["b"], dtype=object))
    assert len(monitor.pending.others) == 4 and monitor.pending.dropped == 2
    monitor.refresh()
    assert monitor.g_rows._value.get() == 4


def test_feedback_labels_are_joined_to_the_remembered_answers(reference, cancer_data):
    X, _ = cancer_data
    records: list[tuple[int, dict[str, object]]] = []
    monitor = LiveMonitor(
        ServerMetrics("cancer", "1", ""),
        reference,
        Settings(),
        names=list(X.columns),
        task="classification",
        interval_s=3600,
        feedback=lambda after: [r for r in records if r[0] > after],
    )
    assert monitor.joins_feedback
    matrix = _rows(cancer_data)
    batch = np.array([1, 0, 1, 1], dtype=np.int64)  # one model run of four answers
    monitor.observe(Rows(4, matrix=matrix[:4]), batch)
    for i in range(4):
        monitor.remember(b"r%d" % i, batch[i : i + 1])
    # three labels for answered requests (two right, one wrong), one for a stranger
    truth = {"r0": 1, "r1": 1, "r2": 1, "nobody": 0}
    records += [(n, {"request_id": k, "label": v}) for n, (k, v) in enumerate(truth.items())]
    monitor.refresh()
    assert monitor.g_labelled._value.get() == 3
    accuracy = monitor.g_quality.labels("cancer", "1", "accuracy")._value.get()
    assert accuracy == pytest.approx(2 / 3)
    assert "r3" in monitor.recent and "r0" not in monitor.recent  # joined once


def test_a_server_reads_only_the_feedback_given_after_it_started(
    tmp_path,
    monitored_package,  # noqa: F811  (the fixture imported above)
):
    """Labels logged before the server started are for answers it never gave: a server
    started on a log of a million of them read them all at once (750 MB, 6 s)."""
    from shipml.audit import AuditLog
    from shipml.config.serving import MonitorSection
    from shipml.serving import ModelServer, Predictor
    from shipml.serving.live import FEEDBACK_READ, _feedback_reader

    log = AuditLog(tmp_path / "a.db", signing_key=tmp_path / "k.pem", checkpoint_dir=tmp_path)
    old = [{"kind": "feedback", "request_id": f"old{i}", "label": "x"} for i in range(2000)]
    log.append_many(old)
    predictor = Predictor.load(monitored_package.path, name="penguins", version="1")
    server = ModelServer(predictor, audit=log, monitor=MonitorSection())
    assert server.live is not None and server.live.feedback is not None
    assert server.live.feedback(-1) == []
    log.append_many([{"kind": "feedback", "request_id": f"new{i}", "label": "x"} for i in range(2)])
    assert [r["request_id"] for _, r in server.live.feedback(-1)] == ["new0", "new1"]
    more = FEEDBACK_READ - len(old) + 1
    log.append_many(
        [{"kind": "feedback", "request_id": f"b{i}", "label": "x"} for i in range(more)]
    )
    first = _feedback_reader(str(log.path))(-1)  # any backlog is read a part at a time
    assert len(first) == FEEDBACK_READ and first[0][1]["request_id"] == "old0"
    log.close()
