"""The tamper-evident audit log: records hashed as RFC 6962 leaves, Merkle checkpoints
signed with Ed25519 on a time cadence and a count, a verifying key pinned outside the
log's folder, and verification."""

from shipml.audit.access import export, open_log, record_event, verify_project
from shipml.audit.codec import canonical, exact
from shipml.audit.keys import key_fingerprint, pin_key, prepare_key
from shipml.audit.log import AuditLog
from shipml.audit.signing import Checkpoint
from shipml.audit.verify import Verification, verify

__all__ = [
    "AuditLog",
    "Checkpoint",
    "Verification",
    "canonical",
    "exact",
    "export",
    "key_fingerprint",
    "open_log",
    "pin_key",
    "prepare_key",
    "record_event",
    "verify",
    "verify_project",
]
