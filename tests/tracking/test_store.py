"""tracking/store.py: importing it leaves the user's process alone; opening a store turns
MLflow's telemetry off unless the user chose otherwise."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import logging, os, sys
before = dict(os.environ)
levels = {n: logging.getLogger(n).level for n in ('mlflow', 'alembic')}
import shipml.tracking.store as store
assert dict(os.environ) == before, 'importing the store changed the environment'
assert levels == {n: logging.getLogger(n).level for n in levels}, 'log levels changed'
assert 'mlflow' not in sys.modules, 'importing the store imported MLflow'
os.environ['DO_NOT_TRACK'] = 'false'  # the user's own choice is kept
store.no_telemetry()
assert os.environ['MLFLOW_ENABLE_TELEMETRY'] == 'false'
assert os.environ['DO_NOT_TRACK'] == 'false'
"""


def test_importing_the_store_changes_nothing_and_telemetry_is_off_when_it_opens():
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", CHECK], check=True, env=env)
