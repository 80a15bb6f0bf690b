"""The dashboard's audit verdict is `shipml audit verify`'s: against the pinned key."""

from __future__ import annotations

import shutil
from pathlib import Path

from shipml.audit import AuditLog, open_log, record_event
from shipml.config import load_config
from shipml.project.dashboard import _predictions


def test_a_log_re_signed_with_another_key_is_not_shown_as_verified(tmp_path: Path):
    (tmp_path / "shipml.toml").write_text('[project]\nname = "x"\n\n[audit]\nenabled = true\n')
    config = load_config(tmp_path)
    record_event(config, {"event": "deploy"})  # first use: key made and pinned
    config = load_config(tmp_path)
    log = open_log(config)
    log.append_many([{"kind": "prediction", "request_id": f"p{i}"} for i in range(3)])
    log.close()
    assert _predictions(config)["verified"]["ok"] is True
    # Someone with write access rewrites the log and signs it with a key of their own.
    audit = tmp_path / ".shipml" / "audit"
    shutil.rmtree(audit)
    forged = AuditLog(
        audit / "audit.db", signing_key=tmp_path / "other.pem", checkpoint_dir=audit / "checkpoints"
    )
    forged.append_many([{"kind": "prediction", "request_id": "forged"}])
    forged.close()
    shown = _predictions(config)
    assert [r["request_id"] for r in shown["rows"]] == ["forged"]
    assert shown["verified"]["ok"] is False and "key" in shown["verified"]["problem"]
