"""Child processes that run in the foreground of a command (JupyterLab, the MLflow UI).

``subprocess.call`` leaves the child running when the command itself is stopped with
SIGTERM or SIGHUP (a CI job cancelled, a terminal closed, a test tearing down): the
child is orphaned and keeps its port. Here those signals are passed on to the child,
and Ctrl-C (which the child gets too, being in the same process group) stops it
cleanly: terminate, then kill if it does not end.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def cannot_listen(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port`` now (the system's reason: the port
    is taken, the address is not this machine's...), or None when it could. Checked before
    a server starts, so a taken port is one clear error rather than a failed start after
    minutes of building or loading. Port 0 (any free port) always can."""
    if not 0 <= port <= 65535:
        return f"{port} is not a TCP port (1 to 65535)"
    if port == 0:
        return None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def run_in_foreground(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> int:
    """Run ``cmd`` until it ends and return its exit code (0 when stopped with Ctrl-C,
    128 + N when ended by signal N); SIGTERM and SIGHUP sent here go to it as well."""
    started: list[subprocess.Popen[bytes]] = []
    early: list[int] = []  # signals that came before the child existed
    previous: dict[int, object] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        if not started:  # Popen has not returned yet: act once it has
            early.append(signum)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        elif started[0].poll() is None:
            started[0].send_signal(signum)

    if threading.current_thread() is threading.main_thread():
        # Before the child starts, so no signal slips through. Ctrl-C is held back too
        # while Popen runs: a KeyboardInterrupt inside it would orphan a forked child.
        held = (
            (signal.SIGINT,)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler
            else ()
        )
        for sig in (*FORWARDED, *held):
            previous[sig] = signal.signal(sig, forward)
    try:
        started.append(subprocess.Popen(list(cmd), env=env, cwd=cwd))
        proc = started[0]
        for signum in early:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            proc.send_signal(signum)
        code = proc.wait()
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as shells say
    except KeyboardInterrupt:
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
