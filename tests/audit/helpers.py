"""A log folder as the audit tests handle it (imported by the SIGKILL script too, so it
stays light: no model, no server)."""

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from shipml.audit import AuditLog, key_fingerprint, verify

EVERY = 50  # records per checkpoint, small so that tests cross several
INTERVAL = 0.2  # seconds between checkpoints while records arrive


@dataclass
class LogFolder:
    """A log with its key, checkpoint folder and what was acknowledged to writers."""

    root: Path
    acked: set[str]

    @property
    def db(self) -> Path:
        return self.root / "audit.db"

    @property
    def key(self) -> Path:
        return self.root / "signing.key"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def copy(self, where: Path) -> "LogFolder":
        shutil.copytree(self.root, where)
        return LogFolder(where, set(self.acked))

    def writer(self, **options) -> AuditLog:
        return AuditLog(
            self.db,
            signing_key=self.key,
            checkpoint_dir=self.checkpoints,
            checkpoint_every=EVERY,
            checkpoint_interval_s=INTERVAL,
            **options,
        )

    def verify(self, **options):
        log = AuditLog(self.db, writer=False)
        try:
            return verify(
                log,
                pin=key_fingerprint(self.key),
                checkpoint_dir=self.checkpoints,
                checkpoint_every=EVERY,
                interval_s=INTERVAL,
                **options,
            )
        finally:
            log.close()

    def sql(self) -> sqlite3.Connection:
        """A plain connection, as someone with write access to the folder has."""
        return sqlite3.connect(self.db, isolation_level=None)


def record(i: int, prefix: str = "r") -> dict:
    return {
        "kind": "prediction",
        "request_id": f"{prefix}{i}",
        "variant": "direct",
        "input": {"matrix": [[float(i), 2.5, -1.0]]},
        "output": {"label": [i % 3], "probabilities": [[0.2, 0.3, 0.5]]},
    }
