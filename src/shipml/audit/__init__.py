"""The tamper-evident audit log: hash-chained records, RFC 6962 Merkle checkpoints
signed with Ed25519, verification."""

from shipml.audit.log import AuditLog, canonical, open_log, record_event
from shipml.audit.signing import Checkpoint
from shipml.audit.verify import Verification, verify

__all__ = [
    "AuditLog",
    "Checkpoint",
    "Verification",
    "canonical",
    "open_log",
    "record_event",
    "verify",
]
