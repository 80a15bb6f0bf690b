"""Which variant served a request: the gateway says so, and only the gateway is believed.

The model server writes the variant into each prediction's audit record. A client
must not be able to choose it, so the server takes it from one of two places only:

- an in-process variant (a model server hosted in the gateway's process) is called
  with the ASGI scope key ``shipml.variant``, which no HTTP client can set;
- a remote variant gets ``X-Shipml-Variant`` with ``X-Shipml-Variant-Proof:
  t=UNIX_TIME;HMAC-SHA256(key, "t\\nrequest id\\nvariant")`` in hex, made with a key the
  gateway and the server share (``[rollout] attestation_key``, a file). A proof older
  than ``MAX_AGE_S`` or made for another request id is refused.

Anything else — a bare header, a bad or stale proof, a server without a key — is
recorded as ``"direct"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from shipml.errors import ConfigError

SCOPE_KEY = "shipml.variant"
HEADER = b"x-shipml-variant"
PROOF_HEADER = b"x-shipml-variant-proof"
DIRECT = "direct"
MAX_AGE_S = 60.0
MAX_VARIANT_BYTES = 64


def _mac(key: bytes, stamp: bytes, request_id: bytes, variant: bytes) -> bytes:
    message = b"%s\n%s\n%s" % (stamp, request_id, variant)
    return hmac.new(key, message, hashlib.sha256).hexdigest().encode()


def proof(key: bytes, request_id: bytes, variant: bytes, now: float | None = None) -> bytes:
    """The value of ``X-Shipml-Variant-Proof`` for this request and variant."""
    stamp = b"%d" % int(time.time() if now is None else now)
    return b"t=%s;%s" % (stamp, _mac(key, stamp, request_id, variant))


def verified(key: bytes, request_id: bytes, variant: bytes, given: bytes) -> bool:
    """Whether ``given`` proves that the gateway holding ``key`` named ``variant``."""
    if not key or not given.startswith(b"t=") or len(variant) > MAX_VARIANT_BYTES:
        return False
    stamp, sep, mac = given[2:].partition(b";")
    if not sep or not stamp.isdigit() or len(stamp) > 12:
        return False
    if abs(time.time() - int(stamp)) > MAX_AGE_S:
        return False
    return hmac.compare_digest(mac, _mac(key, stamp, request_id, variant))


def attested_variant(scope: dict[str, Any], request_id: bytes, key: bytes) -> str:
    """The variant of this request as the gateway attested it, else ``"direct"``."""
    in_process = scope.get(SCOPE_KEY)
    if isinstance(in_process, str):
        return in_process
    if not key:
        return DIRECT
    variant = given = None
    for name, value in scope["headers"]:
        if name == HEADER:
            variant = value
        elif name == PROOF_HEADER:
            given = value
    if variant is None or given is None or not verified(key, request_id, variant, given):
        return DIRECT
    return variant.decode("latin-1")


def load_key(path: Path, *, create: bool = True) -> bytes:
    """The shared key in ``path`` (hex text); made (32 random bytes, mode 0600) when it is
    missing and ``create``. Empty when there is none and it is not to be made."""
    if create and not path.exists():
        _create_key(path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return b""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the attestation key {path}: {type(exc).__name__}",
            hint="[rollout] attestation_key names a file with a hex key (made if missing)",
        ) from exc
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ConfigError(
            f"the attestation key {path} is not at least 16 bytes written in hex",
            hint="delete the file to have a new key made, or write 64 hex digits into it",
        )
    return key


def _create_key(path: Path) -> None:
    """Write a new key next to ``path`` and link it into place: a reader sees either no
    file or a whole key, and when two processes race, the first one's key stands."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".key-", dir=path.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the attestation key {path}: {exc.strerror}",
            hint="set [rollout] attestation_key to a writable place, or create the file",
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:  # mkstemp: mode 0600
            fh.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
