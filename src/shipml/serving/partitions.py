"""The partitions of a CSV or Parquet dataset for batch scoring on a cluster
(``shipml predict --engine dask``), and reading one partition back as a file.

CSV files are cut in byte ranges at line ends (``fsspec.utils.read_block``, as
``dask.dataframe.read_csv`` does; a quoted field holding a line break is not supported);
Parquet files by row groups. Paths are fsspec URIs: a local path or ``s3://``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipml.errors import DataError


@dataclass(frozen=True)
class Part:
    index: int
    uri: str
    kind: str  # csv | parquet
    offset: int = 0  # csv: byte range
    length: int = 0
    row_groups: tuple[int, ...] = ()  # parquet


def _fs(uri: str) -> tuple[Any, str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def _kind(uri: str) -> str:
    name = uri.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    raise DataError(
        f"cannot tell the format of {uri}", hint="give a .csv or .parquet file (not compressed)"
    )


def auto_partition_mb(uri: str, workers: int) -> float:
    """About four partitions per worker (so a slow one does not hold the others up),
    between 1 and 64 MB of input each."""
    fs, path = _fs(uri)
    size = int(fs.size(path))
    if _kind(uri) == "parquet":  # partitions are counted in row groups' (uncompressed) bytes
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    size_mb = size / (1024 * 1024)
    return min(64.0, max(1.0, size_mb / (4 * max(1, workers))))


def check_input(uri: str) -> tuple[Any, str, str]:
    """The input's filesystem, path and kind (csv or parquet); a clear error if it is
    not a CSV or Parquet file that exists."""
    kind = _kind(uri)
    fs, path = _fs(uri)
    if not fs.isfile(path):
        raise DataError(f"input file not found: {uri}", hint="check the path")
    return fs, path, kind


def partitions(uri: str, partition_mb: float) -> list[Part]:
    """The partitions of a CSV or Parquet file, each about ``partition_mb``."""
    fs, path, kind = check_input(uri)
    size = int(fs.size(path))
    block = max(1, int(partition_mb * 1024 * 1024))
    if kind == "csv":
        return [
            Part(i, uri, kind, offset, min(block, size - offset))
            for i, offset in enumerate(range(0, max(size, 1), block))
        ]
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as fh:
        meta = pq.ParquetFile(fh).metadata
    parts: list[Part] = []
    group: list[int] = []
    acc = 0
    for rg in range(meta.num_row_groups):
        group.append(rg)
        acc += meta.row_group(rg).total_byte_size
        if acc >= block:
            parts.append(Part(len(parts), uri, kind, row_groups=tuple(group)))
            group, acc = [], 0
    if group or not parts:
        parts.append(Part(len(parts), uri, kind, row_groups=tuple(group)))
    return parts


def _read_part(part: Part, target: Path) -> bool:
    """Write the partition's rows to ``target`` (a local file); False when it is empty."""
    from fsspec.utils import read_block

    fs, path = _fs(part.uri)
    if part.kind == "csv":
        with fs.open(path, "rb") as fh:
            header = fh.readline()
            data = read_block(fh, part.offset, part.length, delimiter=b"\n")
        if part.offset == 0:
            data = data[len(header) :] if data.startswith(header) else data
        if not data.strip():
            return False
        target.write_bytes(header + data if header.endswith(b"\n") else header + b"\n" + data)
        return True
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as fh:
        table = pq.ParquetFile(fh).read_row_groups(list(part.row_groups))
    if table.num_rows == 0 and part.index > 0:
        return False
    pq.write_table(table, target)
    return True
