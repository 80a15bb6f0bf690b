"""Ed25519 keys, their fingerprints, and signed checkpoints of the audit log.

A checkpoint (a signed tree head, as in RFC 6962/9162) says: the log ``origin`` had
``size`` records whose Merkle root was ``root`` at ``time``, signed by writer session
``session`` which was then ``open`` (it may write more) or ``closed`` (it stopped
cleanly and writes nothing more), and which found the sessions ``ended`` dead (they left
records unsigned for longer than a live writer would). The signature covers the compact,
key-sorted JSON of those seven fields; ``key`` is the signer's raw public key (hex),
which a verifier accepts only if its fingerprint is the pinned one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipml.errors import AuditError

STATES = ("start", "open", "closed")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: str  # hex
    time: str
    session: str
    state: str  # start | open | closed
    ended: str = ""  # writer sessions (comma-separated) this one found dead and ended
    key: str = ""  # the signer's raw Ed25519 public key, hex
    signature: str = ""  # base64

    def message(self) -> bytes:
        names = ("ended", "origin", "root", "session", "size", "state", "time")
        fields = {k: getattr(self, k) for k in names}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        """A checkpoint from untrusted JSON: wrong fields or types are an AuditError."""
        names = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) != names:
            raise AuditError(f"not a checkpoint: expected the fields {sorted(names)}")
        if not isinstance(data["size"], int) or isinstance(data["size"], bool):
            raise AuditError("not a checkpoint: size is not an integer")
        if not all(isinstance(data[k], str) for k in names - {"size"}):
            raise AuditError("not a checkpoint: a field that should be text is not")
        return cls(**data)

    @classmethod
    def parse(cls, body: Any) -> Checkpoint | None:
        """The checkpoint a stored body (signed JSON) holds, or None when it holds none."""
        try:
            return cls.from_dict(orjson.loads(body))
        except (orjson.JSONDecodeError, AuditError, TypeError):
            return None

    @property
    def fingerprint(self) -> str:
        try:
            return fingerprint_of(bytes.fromhex(self.key))
        except ValueError:
            return "sha256:?"


def fingerprint_of(raw_public: bytes) -> str:
    """``sha256:<hex>`` of the raw 32-byte Ed25519 public key."""
    return "sha256:" + hashlib.sha256(raw_public).hexdigest()


def raw_public(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise AuditError(
            f"cannot read the audit signing key {path}: {exc}",
            hint="point [audit] signing_key at an Ed25519 private key (PEM)",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(
            f"{path} is not an Ed25519 private key",
            hint="point [audit] signing_key at an Ed25519 PEM key",
        )
    return key


def load_or_create_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The signing key at ``path`` (PEM, PKCS#8), created with mode 0600 if missing;
    and whether this call created it."""
    if path.is_file():
        return load_key(path), False
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written whole under a temporary name, then linked into place: several workers
    # starting together agree on one key, and nobody reads a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load_key(path), False  # another process won: use its key
    finally:
        tmp.unlink(missing_ok=True)
    return key, True


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(path: Path) -> bytes:
    """The raw public key in a PEM file (public or private)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read the key {path}: {exc.strerror}") from exc
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise AuditError(f"{path} is not a PEM key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey | Ed25519PrivateKey):
        raise AuditError(f"{path} is not an Ed25519 key")
    return raw_public(key)


def sign(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> Checkpoint:
    signature = base64.b64encode(key.sign(checkpoint.message())).decode()
    return replace(checkpoint, key=raw_public(key).hex(), signature=signature)


def check_signature(checkpoint: Checkpoint) -> bool:
    """Whether ``checkpoint`` is signed by the key it names (pinning is the caller's)."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(checkpoint.key))
        key.verify(base64.b64decode(checkpoint.signature, validate=True), checkpoint.message())
    except (InvalidSignature, ValueError):
        return False
    return True
