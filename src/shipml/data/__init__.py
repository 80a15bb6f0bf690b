"""Where is the data: dataset snapshots with full content digests, schema and profile.

The names below load on first use: a module that needs only the drift tests
(``shipml.data.drift``, in the model server) does not import pandas, pyarrow or fsspec.
"""

from typing import TYPE_CHECKING

from shipml.lazy import lazy_names

if TYPE_CHECKING:
    from shipml.data.digest import FORMAT as DIGEST_FORMAT
    from shipml.data.digest import table_digest
    from shipml.data.profile import table_profile, table_schema
    from shipml.data.snapshot import DatasetStore, Snapshot, parse_ref

_LAZY = {
    "DIGEST_FORMAT": "shipml.data.digest:FORMAT",
    "table_digest": "shipml.data.digest",
    "table_profile": "shipml.data.profile",
    "table_schema": "shipml.data.profile",
    "DatasetStore": "shipml.data.snapshot",
    "Snapshot": "shipml.data.snapshot",
    "parse_ref": "shipml.data.snapshot",
}

if not TYPE_CHECKING:  # for type checkers the imports above declare the names
    __getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())

__all__ = [
    "DIGEST_FORMAT",
    "DatasetStore",
    "Snapshot",
    "parse_ref",
    "table_digest",
    "table_profile",
    "table_schema",
]
