"""The dashboard's watch on the audit log: a view verifies only what is new, and anything
that cannot be shown to extend what it verified before is verified whole.

Run against copies of the two logs written for real (conftest: a clean stop, three
SIGKILLs under load) and every tamper kind ``shipml audit verify`` is tested with. The
watch remembers its state in memory; old records changed in place without touching a
checkpoint are the documented exception, caught by the next whole verification."""

import shutil
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import tomlkit
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shipml.audit import Checkpoint, key_fingerprint
from shipml.audit.signing import load_key, sign
from shipml.audit.verify import Verification
from shipml.audit.watch import FULL_EVERY_S, WHOLE_SHARE, LogWatch
from shipml.config import load_config
from shipml.errors import AuditError
from tests.audit.helpers import EVERY, INTERVAL, LogFolder, record
from tests.audit.tampers import CASES, apply

# Records or checkpoint rows below the verified state changed in place: the watch does
# not read them again until the next whole verification (docs/audit.md).
IN_PLACE = {
    "bad checkpoint signature",
    "a checkpoint's size as text",
    "change the content",
    "change the content and its hash",
    "change the leaf column",
    "change the dict column",
    "bytes after the stored frame",
    "change the kind column",
    "change the request_id column",
    "change the variant column",
    "delete",
    "swap",
    "consistent rewrite",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch_of(folder: LogFolder, project: Path, clock: Clock | None = None) -> LogWatch:
    """A watch on ``folder``'s log as `shipml dashboard` has it: through the project's
    settings, against the pinned key."""
    project.mkdir(exist_ok=True)
    settings = {
        "project": {"name": "watched"},
        "audit": {
            "path": str(folder.db),
            "signing_key": str(folder.key),
            "checkpoint_dir": str(folder.checkpoints),
            "key_fingerprint": key_fingerprint(folder.key),
            "checkpoint_every": EVERY,
            "checkpoint_interval_s": INTERVAL,
        },
    }
    (project / "shipml.toml").write_text(tomlkit.dumps(settings))
    return LogWatch(load_config(project), clock=clock or Clock())


def copy(base: LogFolder, tmp_path: Path) -> LogFolder:
    return base.copy(tmp_path / ("killed" if "killed" in str(base.root) else "clean"))


def verified(base: LogFolder, tmp_path: Path, clock: Clock | None = None):
    """A copy of ``base`` and a watch on it that has verified it once, whole."""
    folder = copy(base, tmp_path)
    watch = watch_of(folder, tmp_path / "p", clock)
    first = watch.verify()
    assert first.ok and watch.whole_runs == 1, first.problem
    return folder, watch


def after_whole(watch: LogWatch, clock: Clock) -> Verification:
    """The verdict once the whole verification due after FULL_EVERY_S has run: the view
    that starts it does not wait for it (it gives the verdict on what is new), and the
    whole verdict shows at the first view after it ends."""
    runs = watch.whole_runs
    clock.now += FULL_EVERY_S
    watch.verify()
    assert watch.whole_runs == runs + 1  # started, in a thread
    watch.join(60)
    return watch.verify()


def test_a_view_verifies_what_was_appended_and_gives_the_whole_verdict(base, tmp_path):
    folder, watch = verified(base, tmp_path)
    first = watch.verify()  # nothing new
    log = folder.writer()  # adopts a killed writer's tail, then writes more
    log.append_many([record(i, "more-") for i in range(3 * EVERY + 7)])
    log.close()
    seen = watch.verify()
    whole = folder.verify()
    assert seen.ok and whole.ok, seen.problem
    assert (seen.records, seen.checkpoints, seen.unsigned, seen.key) == (
        whole.records,
        whole.checkpoints,
        whole.unsigned,
        whole.key,
    )
    assert seen.records == first.records + 3 * EVERY + 7
    assert watch.whole_runs == 1  # the second view went on from the first


def test_a_view_of_an_unchanged_log_reads_nothing_again(base, tmp_path):
    """The old records are not read again: one changed in place without its hash goes
    unseen by a view, and is caught by the whole verification due after FULL_EVERY_S."""
    clock = Clock()
    folder, watch = verified(base, tmp_path, clock)
    apply(folder, "change the content")
    assert watch.verify().ok and watch.whole_runs == 1
    late = after_whole(watch, clock)
    assert not late.ok and "was modified" in late.problem and watch.whole_runs == 2


@pytest.mark.parametrize("case", list(CASES))
def test_every_tamper_kind_shows_at_the_next_view(base: LogFolder, case: str, tmp_path):
    """...or, for old records changed in place, at the next whole verification."""
    _, says = CASES[case]
    clock = Clock()
    folder, watch = verified(base, tmp_path, clock)
    apply(folder, case)
    try:
        result = watch.verify()
        assert result.ok is (case in IN_PLACE), f"{case}: {result.problem}"
        if result.ok:  # unseen until the next whole verification, at most FULL_EVERY_S on
            result = after_whole(watch, clock)
    except AuditError as exc:  # the database itself is not a log
        assert says in exc.message
        return
    assert not result.ok, f"{case} went unnoticed"
    assert says in result.problem, result.problem  # the whole verification's verdict


def test_a_new_checkpoint_signed_by_another_key_is_not_verified(clean_log, tmp_path):
    folder, watch = verified(clean_log, tmp_path)
    db = folder.sql()
    body = db.execute("SELECT body FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()[0]
    newest = Checkpoint.parse(body)
    assert newest is not None
    forged = sign(Ed25519PrivateKey.generate(), newest)  # same tree, another signer
    db.execute(
        "INSERT INTO checkpoints (size, session, state, ended, body) VALUES (?, ?, ?, '', ?)",
        (forged.size, forged.session, forged.state, forged.to_json()),
    )
    db.close()
    result = watch.verify()
    assert not result.ok and "not by the pinned key" in result.problem
    assert watch.whole_runs == 2


def test_a_replaced_file_or_another_pin_is_verified_whole(clean_log, tmp_path):
    folder, watch = verified(clean_log, tmp_path)
    # the same bytes under a new inode: another file, verified whole (and it holds)
    shutil.copy(folder.db, tmp_path / "copy.db")
    (tmp_path / "copy.db").replace(folder.db)
    assert watch.verify().ok and watch.whole_runs == 2
    watch.config.audit.key_fingerprint = "sha256:" + "0" * 64
    result = watch.verify()
    assert not result.ok and "not by the pinned key" in result.problem
    assert watch.whole_runs == 3


def test_an_older_head_is_a_checked_row_or_the_log_is_verified_whole(clean_log, tmp_path):
    """A signed head below the verified size (one kept elsewhere): a checkpoint row already
    checked costs nothing more; any other is checked by a whole verification."""
    folder, watch = verified(clean_log, tmp_path)
    db = folder.sql()
    body = db.execute("SELECT body FROM checkpoints WHERE size > 0 ORDER BY id").fetchone()[0]
    db.close()
    head = folder.checkpoints / "head.json"
    head.write_text(body)
    assert watch.verify().ok and watch.whole_runs == 1
    older = Checkpoint.parse(body)
    assert older is not None
    wrong = sign(load_key(folder.key), replace(older, root="00" * 32, time="later"))
    head.write_text(wrong.to_json())  # signed by the pinned key, of no tree in this log
    result = watch.verify()
    assert not result.ok and "do not match the signed checkpoint" in result.problem
    assert watch.whole_runs == 2


def test_a_flood_of_views_shares_verifications(clean_log, tmp_path):
    watch = watch_of(clean_log.copy(tmp_path / "log"), tmp_path / "p")
    runs = []
    check = watch._check
    release = threading.Event()

    def counted():
        runs.append(1)
        release.wait(10)  # a long verification: every view below arrives during it
        return check()

    watch._check = counted  # type: ignore[method-assign]
    results = []
    threads = [threading.Thread(target=lambda: results.append(watch.verify())) for _ in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    release.set()
    for thread in threads:
        thread.join(30)
    assert len(results) == 16 and all(r.ok for r in results)
    assert len(runs) <= 2  # the first caller's, then one for all who waited for it


def test_a_failed_log_is_verified_again_only_when_its_files_change(clean_log, tmp_path):
    folder = clean_log.copy(tmp_path / "log")
    watch = watch_of(folder, tmp_path / "p")
    apply(folder, "change the content")
    assert not watch.verify().ok and watch.whole_runs == 1
    assert not watch.verify().ok and watch.whole_runs == 1
    shutil.rmtree(folder.root)
    clean_log.copy(folder.root)  # restored from the backup
    assert watch.verify().ok and watch.whole_runs == 2


def test_rows_the_database_holds_as_text_are_no_crash(clean_log, tmp_path):
    folder, watch = verified(clean_log, tmp_path)
    db = sqlite3.connect(folder.db, isolation_level=None)
    size = db.execute("SELECT MAX(seq) FROM entries").fetchone()[0]
    db.execute("UPDATE entries SET leaf = 'text' WHERE seq = ?", (size,))
    db.close()
    result = watch.verify()
    assert not result.ok and "was modified" in result.problem


@pytest.mark.parametrize("signs", ["before the view reads head.json", "after it"])
def test_a_writer_signing_during_a_view_is_no_truncation(clean_log, tmp_path, monkeypatch, signs):
    """head.json is written after its checkpoint row commits; the view reads it before
    the database snapshot it verifies, so a head is never ahead of the records seen."""
    import shipml.audit.watch

    folder, watch = verified(clean_log, tmp_path)
    writer = folder.writer()
    real = shipml.audit.watch.signed_heads

    def meanwhile(*args):
        if signs == "after it":
            found = real(*args)
        writer.append_many([record(i, "late-") for i in range(5)])
        writer.checkpoint()
        return found if signs == "after it" else real(*args)

    monkeypatch.setattr(shipml.audit.watch, "signed_heads", meanwhile)
    try:
        result = watch.verify()
    finally:
        writer.close()
    assert result.ok, result.problem
    assert watch.whole_runs == 1


def test_the_whole_verification_runs_beside_the_views_and_spaces_itself(
    clean_log, tmp_path, monkeypatch
):
    """A view never waits for the periodic whole verification; a large log's (one that
    takes longer than WHOLE_SHARE of FULL_EVERY_S) comes less often; an error in it is
    raised at the next view."""
    import shipml.audit.watch

    clock = Clock()
    folder, watch = verified(clean_log, tmp_path, clock)
    real = shipml.audit.watch.verify_from
    started, release = threading.Event(), threading.Event()
    took = FULL_EVERY_S * 2 / WHOLE_SHARE  # twice the budget: the next one comes later
    fail = []

    def slow(log, start, *args, **kwargs):
        if start is not None:  # a view's verification: as it is
            return real(log, start, *args, **kwargs)
        started.set()
        assert release.wait(30)
        clock.now += took
        if fail:
            raise AuditError("the audit database is locked", hint="try again")
        return real(log, start, *args, **kwargs)

    monkeypatch.setattr(shipml.audit.watch, "verify_from", slow)
    clock.now += FULL_EVERY_S
    begun = time.monotonic()
    assert watch.verify().ok and started.wait(30)  # the view went on: the whole runs
    writer = folder.writer()
    writer.append_many([record(i, "during-") for i in range(EVERY + 3)])
    writer.close()
    during = watch.verify()  # the whole still running: the view does not wait
    assert during.ok and time.monotonic() - begun < 20 and watch.whole_runs == 2
    release.set()
    watch.join(30)
    assert watch.verify().records == during.records  # it held: the views go on
    clock.now += FULL_EVERY_S + 1  # due by the default spacing, not by this log's
    assert watch.verify().ok and watch.whole_runs == 2
    clock.now += took / WHOLE_SHARE
    fail.append(1)
    watch.verify()
    watch.join(30)
    assert watch.whole_runs == 3
    with pytest.raises(AuditError, match="locked"):
        watch.verify()
    monkeypatch.setattr(shipml.audit.watch, "verify_from", real)
    assert watch.verify().ok and watch.whole_runs == 4  # verified whole again, at once
