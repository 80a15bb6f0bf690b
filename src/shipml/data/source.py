"""Reading a data source: a CSV or Parquet file given as a path or any URI fsspec understands."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa

from shipml.errors import DataError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class RawSource:
    """The bytes of a source and where they came from."""

    uri: str
    format: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def normalize_uri(source: str, base: Path | None = None) -> str:
    """A path becomes an absolute ``file://`` URI (relative to ``base``); URIs stay as given."""
    if "://" in source:
        return source
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return path.resolve().as_uri()


def source_format(uri: str) -> str:
    name = uri.rsplit("/", 1)[-1].lower()
    for ext, fmt in FORMATS.items():
        if name.endswith(ext) or name.endswith(ext + ".gz"):
            return fmt
    raise DataError(
        f"cannot tell the format of {uri!r} from its name",
        hint="give a file ending in .csv, .csv.gz, .parquet or .pq",
    )


def read_source(source: str, base: Path | None = None) -> RawSource:
    """Fetch the raw bytes of a source (local path, file://, s3://, ...)."""
    uri = normalize_uri(source, base)
    fmt = source_format(uri)
    try:
        with fsspec.open(uri, "rb", compression="infer") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise DataError(
            f"data file not found: {source}" + (f" (looked at {uri})" if uri != source else ""),
            hint="check the path, or the `source` of this dataset in shipml.toml",
        ) from exc
    except (ImportError, ValueError) as exc:
        raise DataError(
            f"cannot open {uri}: {exc}",
            hint="for s3:// install s3fs, for gs:// gcsfs; check the URI's spelling",
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot read {uri}: {exc}", hint="check permissions and the URI") from exc
    return RawSource(uri=uri, format=fmt, data=data)


def parse_source(raw: RawSource) -> pd.DataFrame:
    """Parse raw bytes into a table, turning parser failures into a clear DataError."""
    if raw.format == "csv":
        if not raw.data.strip():
            raise DataError(f"{raw.uri} is empty", hint="a CSV needs a header line and rows")
        try:
            df = pd.read_csv(io.BytesIO(raw.data), low_memory=False)  # types from all rows
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            detail = " ".join(str(exc).split())
            raise DataError(
                f"malformed CSV {raw.uri}: {detail}",
                hint="every row must have as many fields as the header; quote fields "
                "that contain commas",
            ) from exc
        if not df.index.equals(pd.RangeIndex(len(df))):
            # pandas takes the first column(s) as the index when every row has more fields
            # than the header: data would be lost silently.
            extra = df.index.nlevels
            raise DataError(
                f"malformed CSV {raw.uri}: the rows have {extra} more field(s) than the header "
                f"({len(df.columns)} names)",
                hint="add the missing column names to the header line, or remove the extra fields",
            )
        return df
    try:
        df = pd.read_parquet(io.BytesIO(raw.data))
        if not df.index.equals(pd.RangeIndex(len(df))):
            df = df.reset_index()  # a stored pandas index is data too: keep it as columns
        return df
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"{raw.uri} is not a readable Parquet file: {exc}",
            hint="check that the file is Parquet, or give a .csv",
        ) from exc
