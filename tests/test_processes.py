"""Foreground children: stopping the command stops them; nothing is orphaned."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import children_of

# The command as a terminal runs it: Ctrl-C raises KeyboardInterrupt. (A shell without
# job control starts background jobs with SIGINT ignored; Python keeps that.)
PARENT = """\
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from shipml.processes import run_in_foreground
print("started", flush=True)
sys.exit(run_in_foreground([sys.executable, "-c", "import time; time.sleep(600)"]))
"""


def _child_of(pid: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while not (children := children_of(pid)):
        assert time.monotonic() < deadline, "no child started"
        time.sleep(0.05)
    return children[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_the_child_ends_with_the_command(sig: signal.Signals) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdout.readline().strip() == "started"
    child = _child_of(parent.pid)
    parent.send_signal(sig)
    code = parent.wait(timeout=30)
    assert code == (0 if sig == signal.SIGINT else 128 + sig)  # Ctrl-C is a normal stop
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        assert time.monotonic() < deadline, f"the child outlived the command ({sig.name})"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
