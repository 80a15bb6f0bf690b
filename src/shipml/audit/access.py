"""A project's audit log, as the commands reach it: open it (a writer pinned to its key,
or a reader that never writes), record a lifecycle event, verify it, export it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from shipml.audit.database import is_url, redact
from shipml.audit.keys import key_fingerprint, prepare_key
from shipml.audit.log import AuditLog
from shipml.audit.reading import Reader
from shipml.audit.verify import Verification, verify
from shipml.errors import AuditError, ConfigError
from shipml.files import output_file

FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")


def log_target(config: Any) -> Path | str:
    section = config.audit
    return section.path if is_url(section.path) else config.path(section.path)


def open_log(config: Any, *, writer: bool = True) -> AuditLog:
    """The project's audit log (``config`` is a ProjectConfig). A reader (verify, explain,
    export) opens it without the signing key: it never creates a key or signs anything."""
    section = config.audit
    if not writer:
        return AuditLog(log_target(config), writer=False)
    return AuditLog(
        log_target(config),
        signing_key=config.path(section.signing_key),
        checkpoint_dir=config.path(section.checkpoint_dir),
        checkpoint_every=section.checkpoint_every,
        checkpoint_interval_s=section.checkpoint_interval_s,
        durability=section.durability,
        commit_window_ms=section.commit_window_ms,
        key_fingerprint=prepare_key(config),
    )


def record_event(config: Any, event: dict[str, Any]) -> None:
    """Write one lifecycle event to the project's log, if ``[audit] enabled``."""
    if not config.audit.enabled:
        return
    log = open_log(config)
    try:
        log.append({"kind": "event", **event})
    finally:
        log.close()


def verify_project(
    config: Any,
    *,
    key: Path | None = None,
    fingerprint: str = "",
    heads: list[Path] | None = None,
) -> Verification:
    """``shipml audit verify``: the trusted key is ``fingerprint``, else the key file
    ``key``, else the pin in shipml.toml; without any of them verification fails."""
    fingerprint = fingerprint.strip().lower()
    if fingerprint and not FINGERPRINT.match(fingerprint):
        # a typo is not a tampered log (exit 10 sends people to restore backups)
        raise ConfigError(
            f"--fingerprint expects sha256: and 64 hex digits, got {fingerprint[:80]!r}",
            hint="copy it from `shipml audit key` or [audit] key_fingerprint",
        )
    pin = fingerprint or (key_fingerprint(key) if key is not None else "")
    pin = pin or config.audit.key_fingerprint
    section = config.audit
    log = open_log(config, writer=False)
    try:
        result = verify(
            log,
            pin=pin,
            checkpoint_dir=config.path(section.checkpoint_dir),
            heads=heads,
            checkpoint_every=section.checkpoint_every,
            interval_s=section.checkpoint_interval_s,
        )
    finally:
        log.close()
    return require_pin(result, pin)


def require_pin(result: Verification, pin: str) -> Verification:
    """No pinned key, no verified log: a log re-signed with another key would pass."""
    if not pin and result.ok:
        result.ok = False
        result.problem = (
            "no key is pinned, so a log rewritten and re-signed with another key would pass "
            f"(the checkpoints are signed by {result.key or 'no key'})"
        )
    return result


def export(config: Any, output: Path) -> int:
    """Every record (checked against its hash) to JSON Lines, or to Parquet with one
    column per field and nested values as JSON text; streamed, in bounded memory."""
    if output.is_dir():
        raise AuditError(
            f"{output} is a folder", hint="give a file name ending in .jsonl or .parquet"
        )
    log = open_log(config, writer=False)
    try:
        with output_file(output) as tmp:
            if output.suffix == ".parquet":
                return _parquet(log, tmp)
            count = 0
            with tmp.open("wb") as fh:
                for record in log.records():
                    fh.write(orjson.dumps(record) + b"\n")
                    count += 1
            return count
    except OSError as exc:
        raise AuditError(
            f"cannot write {output}: {exc.strerror or exc}", hint="check the path and the disk"
        ) from exc
    finally:
        log.close()


def _parquet(log: Reader, file: Path, batch: int = 10_000) -> int:
    """Two streaming passes: the columns (every field seen), then the rows in batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys: set[str] = set()
    for record in log.records():
        keys.update(record)
    schema = pa.schema([(k, _type(k)) for k in sorted(keys)])
    count = 0
    with pq.ParquetWriter(file, schema) as writer:
        for rows in _batches(log.records(), batch):
            columns = {k: [_cell(r.get(k), k) for r in rows] for k in schema.names}
            writer.write_table(pa.table(columns, schema=schema))
            count += len(rows)
    return count


def _type(key: str) -> Any:
    import pyarrow as pa

    return pa.int64() if key == "seq" else pa.string()


def _cell(value: Any, key: str) -> Any:
    if value is None or key == "seq":
        return value
    return value if isinstance(value, str) else json.dumps(value)


def _batches(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    for record in records:
        rows.append(record)
        if len(rows) == size:
            yield rows
            rows = []
    if rows:
        yield rows


def shown(config: Any) -> str:
    return redact(config.audit.path)
