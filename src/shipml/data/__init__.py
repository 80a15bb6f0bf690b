"""Where is the data: dataset snapshots with full content digests, schema and profile."""

from shipml.data.digest import FORMAT as DIGEST_FORMAT
from shipml.data.digest import table_digest
from shipml.data.profile import table_profile, table_schema
from shipml.data.snapshot import DatasetStore, Snapshot, parse_ref

__all__ = [
    "DIGEST_FORMAT",
    "DatasetStore",
    "Snapshot",
    "parse_ref",
    "table_digest",
    "table_profile",
    "table_schema",
]
