"""Ed25519 keys and signed checkpoints (size, root, time) of the audit log."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipml.errors import AuditError


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: str  # hex
    time: str
    signature: str = ""  # base64 Ed25519 over the canonical JSON of size, root, time

    def message(self) -> bytes:
        return json.dumps(
            {"root": self.root, "size": self.size, "time": self.time},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        return cls(**json.loads(text))


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at ``path`` (PEM, PKCS#8); created with mode 0600 if missing."""
    if path.is_file():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditError(
                f"{path} is not an Ed25519 private key",
                hint="point [audit] signing_key at an Ed25519 PEM key",
            )
        return key
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
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_key(path)  # another process won: use its key
    finally:
        tmp.unlink(missing_ok=True)
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> Checkpoint:
    signature = base64.b64encode(key.sign(checkpoint.message())).decode()
    return Checkpoint(checkpoint.size, checkpoint.root, checkpoint.time, signature)


def check_signature(key: Ed25519PublicKey, checkpoint: Checkpoint) -> bool:
    try:
        key.verify(base64.b64decode(checkpoint.signature), checkpoint.message())
    except (InvalidSignature, ValueError):
        return False
    return True
