"""The dashboard's audit verdict is `shipml audit verify`'s: against the pinned key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shipml.audit import AuditLog, open_log, record_event
from shipml.config import ProjectConfig, load_config
from shipml.project.dashboard import _predictions, gatherer


def _project(tmp_path: Path) -> ProjectConfig:
    """A project whose log holds a deploy event and three predictions, its key pinned."""
    (tmp_path / "shipml.toml").write_text('[project]\nname = "x"\n\n[audit]\nenabled = true\n')
    config = load_config(tmp_path)
    record_event(config, {"event": "deploy"})  # first use: key made and pinned
    config = load_config(tmp_path)
    _predict(config, [f"p{i}" for i in range(3)])
    return config


def _predict(config: ProjectConfig, ids: list[str]) -> None:
    log = open_log(config)
    log.append_many([{"kind": "prediction", "request_id": i} for i in ids])
    log.close()


def _re_sign(tmp_path: Path) -> None:
    """Someone with write access rewrites the log and signs it with a key of their own."""
    audit = tmp_path / ".shipml" / "audit"
    shutil.rmtree(audit)
    forged = AuditLog(
        audit / "audit.db", signing_key=tmp_path / "other.pem", checkpoint_dir=audit / "checkpoints"
    )
    forged.append_many([{"kind": "prediction", "request_id": "forged"}])
    forged.close()


def test_a_log_re_signed_with_another_key_is_not_shown_as_verified(tmp_path: Path):
    config = _project(tmp_path)
    assert _predictions(config)["verified"]["ok"] is True
    _re_sign(tmp_path)
    shown = _predictions(config)
    assert [r["request_id"] for r in shown["rows"]] == ["forged"]
    assert shown["verified"]["ok"] is False and "key" in shown["verified"]["problem"]


def test_the_dashboard_process_verifies_what_is_new_and_sees_a_re_signed_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`shipml dashboard` verifies the whole log once, then at each view only what was
    appended; a log re-signed with another key still shows as not verified at once."""
    import shipml.audit.watch

    passes: list[int] = []  # the size each verification started from
    real = shipml.audit.watch.verify_from

    def spy(log, start, *args, **kwargs):
        passes.append(start.size if start else 0)
        return real(log, start, *args, **kwargs)

    monkeypatch.setattr(shipml.audit.watch, "verify_from", spy)
    config = _project(tmp_path)
    gather = gatherer(config)
    assert gather()["predictions"]["verified"] == {"ok": True, "records": 4, "problem": ""}
    _predict(config, ["p3", "p4"])
    shown = gather()["predictions"]
    assert shown["verified"] == {"ok": True, "records": 6, "problem": ""}
    assert [r["request_id"] for r in shown["rows"]] == ["p4", "p3", "p2", "p1", "p0"]
    assert passes[0] == 0 and passes[1] > 0  # the second view went on from the first
    _re_sign(tmp_path)
    shown = gather()["predictions"]
    assert [r["request_id"] for r in shown["rows"]] == ["forged"]
    assert shown["verified"]["ok"] is False and "key" in shown["verified"]["problem"]


def test_a_model_registered_with_quotes_in_its_name_takes_nothing_down(tmp_path: Path):
    """Anyone with the registry may register ``a'b`` (MLflow's UI allows it): its versions
    were searched with ``name = 'a'b'``, an invalid filter, and the whole dashboard was a
    500 at every view. Now it is read; a name holding both quotes is that model's error."""
    from shipml.project.dashboard import _models
    from shipml.tracking import tracker_for

    (tmp_path / "shipml.toml").write_text('[project]\nname = "x"\n')
    config = load_config(tmp_path)
    client = tracker_for(config).client
    run = client.create_run(client.create_experiment("e")).info.run_id
    for name in ("a'b", "both'\"quotes", "plain"):
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run}/model", run_id=run)
    shown = {m["name"]: m for m in _models(config)}
    assert [v["version"] for v in shown["a'b"]["versions"]] == ["1"]
    assert [v["version"] for v in shown["plain"]["versions"]] == ["1"]
    assert shown["both'\"quotes"]["versions"] == [] and shown["both'\"quotes"]["error"]
