"""Monitoring models in production: drift of inputs and predictions against the package's
reference profile, quality from feedback labels, alert rules and dashboards as data.

The statistics themselves live in ``shipml.data.drift`` (the model server uses them
too); this package reads windows of rows (audit log, files), judges them, and describes
how Prometheus and Grafana watch the live metrics.
"""

from shipml.monitor.result import MonitorResult, monitor_rows
from shipml.monitor.window import WindowSpec, parse_period

__all__ = ["MonitorResult", "WindowSpec", "monitor_rows", "parse_period"]
