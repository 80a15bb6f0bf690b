"""The verifying key, pinned outside the log's folder.

The private key signs checkpoints. Whoever can write the log's folder can write a new
key and ``public.pem`` there too, so a verifier trusts only the key whose fingerprint is
pinned where the log's writer does not write: ``[audit] key_fingerprint`` in
``shipml.toml`` (committed, reviewed, in git history), or ``--key``/``--fingerprint``
given to ``shipml audit verify``.

A first-time project is pinned on first use: the writer that creates the key writes its
fingerprint into ``shipml.toml`` (comments and layout kept, by tomlkit) and says so. A
key that exists while no pin does is never pinned silently: ``shipml audit key --pin``
does it once a person has checked the key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from shipml.audit.signing import fingerprint_of, load_or_create_key, load_public_key, raw_public
from shipml.errors import AuditError

log = logging.getLogger("shipml.audit")
CONFIG_FILE = "shipml.toml"


def key_fingerprint(path: Path) -> str:
    """The fingerprint of the key (private or public PEM) at ``path``."""
    return fingerprint_of(load_public_key(path))


def prepare_key(config: Any) -> str:
    """The fingerprint the project's writers must sign with: the pinned one, after
    checking the key file is that key; on first use (no key yet, no pin) the new key's,
    written into shipml.toml. ``config`` is a ProjectConfig."""
    section = config.audit
    path = config.path(section.signing_key)
    pin = section.key_fingerprint
    key, created = load_or_create_key(path)
    mine = fingerprint_of(raw_public(key))
    if pin:
        if pin != mine:
            raise AuditError(
                f"the audit signing key {path} is {mine}, but shipml.toml pins {pin}",
                hint="restore the pinned key; if the key was replaced on purpose, check why, "
                "then `shipml audit key --pin`",
            )
        return pin
    if created:
        if write_pin(config.root / CONFIG_FILE, mine):
            config.audit.key_fingerprint = mine
            log.warning(
                "audit: created the signing key %s and pinned %s in shipml.toml "
                "([audit] key_fingerprint); commit it",
                path,
                mine,
            )
        return mine
    log.warning(
        "audit: no key_fingerprint is pinned in shipml.toml; `shipml audit verify` cannot "
        "tell this key from a replaced one (`shipml audit key --pin` pins it)"
    )
    return ""


def write_pin(file: Path, fingerprint: str) -> bool:
    """Set ``[audit] key_fingerprint`` in ``file``, keeping everything else as it is.
    False (with a warning) when the file cannot be written, e.g. in a read-only image."""
    try:
        text = file.read_text(encoding="utf-8") if file.is_file() else ""
        doc = tomlkit.parse(text)
        section = doc.get("audit")
        if section is None:
            section = tomlkit.table()
            doc["audit"] = section
        section["key_fingerprint"] = fingerprint
        tmp = file.with_name(f".{file.name}.pin")
        tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
        tmp.replace(file)
    except (OSError, tomlkit.exceptions.TOMLKitError) as exc:
        log.warning("audit: could not pin the signing key in %s: %s", file, exc)
        return False
    return True


def pin_key(config: Any) -> str:
    """``shipml audit key --pin``: pin the existing signing key's fingerprint."""
    path = config.path(config.audit.signing_key)
    if not path.is_file():
        raise AuditError(
            f"there is no signing key at {path} yet",
            hint="it is created (and pinned) by the first writer: shipml serve, an alias change",
        )
    fingerprint = key_fingerprint(path)
    if not write_pin(config.root / CONFIG_FILE, fingerprint):
        raise AuditError(f"cannot write the pin into {config.root / CONFIG_FILE}")
    return fingerprint
