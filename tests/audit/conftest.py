"""Shared audit fixtures: logs written for real (one stopped cleanly, one killed with
SIGKILL under load, three times), and the raw-database helpers a tamperer would use."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.audit.helpers import INTERVAL, LogFolder, record
from tests.serving.conftest import penguins_data, penguins_package  # noqa: F401  (shared fixtures)


@pytest.fixture(scope="session")
def clean_log(tmp_path_factory) -> LogFolder:
    """About 300 records from sync batches and concurrent async appends, then a clean
    stop (a closing checkpoint), then a second writer session that also stops cleanly."""
    import asyncio

    folder = LogFolder(tmp_path_factory.mktemp("clean") / "log", set())
    folder.root.mkdir()
    for session in range(2):
        log = folder.writer()
        for start in range(0, 100, 10):
            log.append_many([record(i, f"s{session}-") for i in range(start, start + 10)])

        async def burst(log=log, session=session):
            return await asyncio.gather(
                *(log.append_async(record(i, f"a{session}-")) for i in range(50))
            )

        asyncio.run(burst())
        log.close()
    folder.acked = {f"s{s}-{i}" for s in range(2) for i in range(100)}
    return folder


KILL_SCRIPT = """
import asyncio, sys
from pathlib import Path
from tests.audit.helpers import LogFolder, record

folder = LogFolder(Path(sys.argv[1]), set())
log = folder.writer()

async def client(n):
    i = 0
    while True:
        rid = f"{sys.argv[2]}-{n}-{i}"
        await log.append_async(record(i, rid + "-"))
        sys.stdout.write(rid + "-" + str(i) + "\\n")
        sys.stdout.flush()
        i += 1

async def main():
    await asyncio.gather(*(client(n) for n in range(16)))

asyncio.run(main())
"""


def kill_under_load(folder: LogFolder, name: str, acked_at_least: int = 400) -> set[str]:
    """Run a writer with 16 concurrent clients, SIGKILL it once it has acknowledged
    enough records and signed past them; returns every acknowledged request id."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(folder.root), name],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        text=True,
    )
    acked: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while len(acked) < acked_at_least and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    time.sleep(INTERVAL * 1.5)  # under load across a cadence: a checkpoint, then more
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    acked += [line for line in rest.splitlines() if line]
    assert len(acked) >= acked_at_least, "the writer did not get going"
    return set(acked)


@pytest.fixture(scope="session")
def killed_log(tmp_path_factory) -> LogFolder:
    """Three rounds of a writer SIGKILLed under load on the same log (each round adopts
    the tail the last one left unsigned); the last round's tail stays unsigned."""
    folder = LogFolder(tmp_path_factory.mktemp("killed") / "log", set())
    folder.root.mkdir()
    for round_ in range(3):
        folder.acked |= kill_under_load(folder, f"k{round_}")
    return folder


@pytest.fixture(params=["clean stop", "kill -9 under load"])
def base(request) -> LogFolder:
    """Each of the two logs above (a test copies it before changing it)."""
    return request.getfixturevalue("clean_log" if request.param == "clean stop" else "killed_log")
