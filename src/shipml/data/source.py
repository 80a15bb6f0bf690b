"""Reading a data source: a CSV or Parquet file given as a path or a URI (file, s3, gs,
az; http and https only where ``[data] allow_http`` says so), within the limits of
``[data]``: bytes (after decompression), rows and, for CSV, the length of a line. Limits are
enforced while the bytes stream in, so a gzip bomb stops at the limit."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit
from urllib.request import url2pathname

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa

from shipml.errors import ConfigError, DataError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
PROTOCOLS = frozenset({"file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
WEB = frozenset({"http", "https"})
CHUNK = 1 << 20
# Query parameters that carry a credential: a presigned URL's signature (S3, GCS, Azure
# SAS), an API key or token. Their values never reach a snapshot, a label or a message.
SECRET_PARAMS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "sig",
        "signature",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "secret",
        "client_secret",
    }
)


def public_uri(uri: str) -> str:
    """``uri`` without a user name or password, and with every credential in its query
    (``SECRET_PARAMS``) shown as ``***``: what a snapshot records and a message shows."""
    parts = urlsplit(uri)
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        netloc = netloc.rpartition("@")[2]
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
        query = "&".join(
            f"{quote(k, safe='')}=" + ("***" if k.lower() in SECRET_PARAMS else quote(v, safe=""))
            for k, v in pairs
        )
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _shown(uri: str) -> str:
    return public_uri(uri)[:200]


def _scrub(text: str, uri: str) -> str:
    """A library's error text with the credentials of ``uri`` taken out (aiohttp and
    botocore quote the URL they were given)."""
    parts = urlsplit(uri)
    secrets = [parts.password or "", parts.username or ""]
    secrets += [v for k, v in parse_qsl(parts.query) if k.lower() in SECRET_PARAMS]
    for secret in sorted({x for x in secrets if len(x) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


@dataclass(frozen=True)
class SourceLimits:
    """What one source may hold (``[data]`` in shipml.toml)."""

    max_bytes: int = 1 << 30  # after decompression
    max_rows: int = 10_000_000  # CSV: lines after the header; Parquet: rows
    max_line_bytes: int = 1 << 20  # CSV: the longest line (a field cannot be larger)
    allow_http: bool = False

    @classmethod
    def of_project(cls, base: Path | None) -> SourceLimits:
        """The ``[data]`` limits of the project at ``base`` (defaults outside a project)."""
        if base is None or not (base / "shipml.toml").is_file():
            return cls()
        from shipml.config import load_config

        section: Any = getattr(load_config(base), "data", None)
        if section is None:
            return cls()
        return cls(
            max_bytes=section.max_bytes,
            max_rows=section.max_rows,
            max_line_bytes=section.max_line_bytes,
            allow_http=section.allow_http,
        )


@dataclass(frozen=True)
class RawSource:
    """The bytes of a source and where they came from."""

    uri: str
    format: str
    data: bytes

    @cached_property  # asked for twice by an add; computed once
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def public(self) -> str:
        """Where the bytes came from, without credentials (what a snapshot records)."""
        return public_uri(self.uri)


def normalize_uri(source: str, base: Path | None = None) -> str:
    """A path becomes an absolute ``file://`` URI (relative to ``base``); URIs stay as given."""
    if "://" in source:
        return source
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    try:
        return path.resolve().as_uri()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise DataError(
            f"cannot resolve the path {source[:200]!r}: {str(exc)[:200]}",
            hint="the path is (or passes through) a symbolic link that points back to "
            "itself: give the real file's path",
        ) from exc


def source_format(uri: str, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format named by the path's ending (without any query
    string or fragment: ``x.txt?a=.csv`` is not a CSV)."""
    if fmt:
        if fmt not in ("csv", "parquet"):
            raise DataError(f"unknown format {fmt[:40]!r}", hint="use csv or parquet")
        return fmt
    name = urlsplit(uri).path.rsplit("/", 1)[-1].lower() if "://" in uri else uri.lower()
    for ext, found in FORMATS.items():
        if name.endswith(ext) or name.endswith(ext + ".gz"):
            return found
    raise DataError(
        f"cannot tell the format of {_shown(uri)!r} from its name",
        hint="give a file ending in .csv, .csv.gz, .parquet or .pq, or --format csv|parquet",
    )


def check_uri(uri: str, limits: SourceLimits) -> None:
    """Only plain URIs of known stores; http(s) only where allowed."""
    protocol = uri.split("://", 1)[0].lower()
    if "::" in uri or protocol not in PROTOCOLS | WEB:
        raise DataError(
            f"unsupported data source {_shown(uri)!r}",
            hint="give a path, or a file://, s3://, gs:// or az:// URI (no chained URLs)",
        )
    if protocol in WEB and not limits.allow_http:
        raise DataError(
            f"{_shown(uri)} is a web address, and reading data from the web is off",
            hint="download the file, or set [data] allow_http = true in shipml.toml",
        )


def _stream(fh: Any, uri: str, fmt: str, limits: SourceLimits) -> bytes:
    """Read ``fh`` in chunks, stopping at the first limit passed."""
    chunks: list[bytes] = []
    size = lines = line = 0
    while chunk := fh.read(CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > limits.max_bytes:
            raise DataError(
                f"{_shown(uri)} holds more than {limits.max_bytes:,} bytes (after decompression)",
                hint="raise [data] max_bytes in shipml.toml, or split the data",
            )
        if fmt == "csv":
            lines, line = _check_lines(chunk, uri, limits, lines, line)
    return b"".join(chunks)


def _check_lines(
    chunk: bytes, uri: str, limits: SourceLimits, lines: int, line: int
) -> tuple[int, int]:
    """The CSV limits over one more chunk: ``lines`` ended so far and the length of the
    open ``line``, updated. The newlines are found by bytes' own C searches; the lengths
    of the lines inside the chunk only when the chunk is longer than a line may be."""
    count = chunk.count(b"\n")
    if not count:
        line += len(chunk)
        longest = 0
    else:
        first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
        longest = line + first
        if count > 1 and last - first > limits.max_line_bytes:
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            longest = max(longest, int(np.diff(ends).max()) - 1)
        line = len(chunk) - last - 1
        lines += count
    if longest > limits.max_line_bytes or line > limits.max_line_bytes:
        raise DataError(
            f"{_shown(uri)} has a line longer than {limits.max_line_bytes:,} bytes "
            f"(near line {lines + 1})",
            hint="raise [data] max_line_bytes in shipml.toml if such fields are real",
        )
    if lines > limits.max_rows + 1:
        raise DataError(
            f"{_shown(uri)} has more than {limits.max_rows:,} rows",
            hint="raise [data] max_rows in shipml.toml, or sample the data",
        )
    return lines, line


def local_path(uri: str) -> str | None:
    """The local path a ``file://`` URI names (``%20`` a space: fsspec would look for the
    name with ``%20`` in it), None for any other URI."""
    if not uri.startswith("file://"):
        return None
    return url2pathname(urlsplit(uri).path)


def _check_local(source: str, uri: str) -> None:
    """A local source that is missing or a folder says so, before its name is read for a
    format ('/data/new' would otherwise be "cannot tell the format")."""
    local = local_path(uri)
    if local is None:
        return
    path = Path(local)
    looked = f" (looked at {path})" if str(path) != source else ""
    if path.is_dir():
        raise DataError(
            f"{source} is a folder, not a data file{looked}",
            hint="give a CSV or Parquet file (one file: shipml snapshots a table)",
        )
    if not path.exists():
        raise DataError(
            f"data file not found: {source}{looked}",
            hint="check the path, or the `source` of this dataset in shipml.toml",
        )


def read_source(
    source: str,
    base: Path | None = None,
    *,
    fmt: str | None = None,
    limits: SourceLimits | None = None,
) -> RawSource:
    """Fetch the raw bytes of a source (local path, file://, s3://, ...) within ``limits``
    (default: the ``[data]`` section of the project at ``base``)."""
    limits = limits or SourceLimits.of_project(base)
    uri = normalize_uri(source, base)
    check_uri(uri, limits)
    _check_local(source, uri)
    fmt = source_format(uri, fmt)
    try:
        with fsspec.open(local_path(uri) or uri, "rb", compression="infer") as fh:
            data = _stream(fh, uri, fmt, limits)
        if fmt == "parquet":
            _check_parquet(data, uri, limits)
    except (DataError, ConfigError):
        raise
    except FileNotFoundError as exc:
        raise DataError(
            f"data file not found: {_shown(source)}"
            + (f" (looked at {_shown(uri)})" if uri != source else ""),
            hint="check the path, or the `source` of this dataset in shipml.toml",
        ) from exc
    except (ImportError, ValueError) as exc:
        raise DataError(
            f"cannot open {_shown(uri)}: {_scrub(str(exc), uri)[:300]}",
            hint="for s3:// install s3fs, for gs:// gcsfs; check the URI's spelling",
        ) from exc
    except (OSError, EOFError) as exc:  # EOFError: a truncated gzip
        raise DataError(
            f"cannot read {_shown(uri)}: {_scrub(str(exc), uri)[:300]}",
            hint="check permissions and the URI",
        ) from exc
    except Exception as exc:  # fsspec backends raise their own types (aiohttp, botocore...)
        raise DataError(
            f"cannot read {_shown(uri)}: {type(exc).__name__}: {_scrub(str(exc), uri)[:300]}",
            hint="check the URI, the network and the credentials",
        ) from exc
    return RawSource(uri=uri, format=fmt, data=data)


def _check_parquet(data: bytes, uri: str, limits: SourceLimits) -> None:
    """Rows and decompressed size from the Parquet footer, before anything is decoded."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    except (pa.ArrowException, OSError, ValueError):
        return  # not Parquet: parse_source says so
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if meta.num_rows > limits.max_rows:
        raise DataError(
            f"{_shown(uri)} has {meta.num_rows:,} rows, more than {limits.max_rows:,}",
            hint="raise [data] max_rows in shipml.toml, or sample the data",
        )
    if size > limits.max_bytes:
        raise DataError(
            f"{_shown(uri)} decodes to {size:,} bytes, more than {limits.max_bytes:,}",
            hint="raise [data] max_bytes in shipml.toml, or split the data",
        )


def parse_source(raw: RawSource) -> pd.DataFrame:
    """Parse raw bytes into a table, turning parser failures into a clear DataError."""
    if raw.format == "csv":
        if not raw.data or raw.data.isspace():  # isspace stops at the first other byte
            raise DataError(f"{raw.uri} is empty", hint="a CSV needs a header line and rows")
        try:
            df = pd.read_csv(io.BytesIO(raw.data), low_memory=False)  # types from all rows
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{raw.uri} is not UTF-8 text: {exc.reason} (byte "
                f"{exc.object[exc.start : exc.start + 1]!r})",
                hint="save the CSV as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or convert it "
                "to Parquet",
            ) from exc
        except (pd.errors.ParserError, ValueError) as exc:
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
        _check_header(raw, df)
        return df
    try:
        # A BufferReader reads the bytes in place and lets Arrow decode on all cores;
        # through a BytesIO every read goes back into Python (4x slower at 1M rows).
        df = pd.read_parquet(pa.BufferReader(raw.data))
        if not df.index.equals(pd.RangeIndex(len(df))):
            df = df.reset_index()  # a stored pandas index is data too: keep it as columns
        return df
    except (pa.ArrowException, OSError, ValueError) as exc:
        _check_parquet_names(raw)
        raise DataError(
            f"{raw.uri} is not a readable Parquet file: {' '.join(str(exc).split())[:300]}",
            hint="check that the file is Parquet, or give a .csv",
        ) from exc


def _check_header(raw: RawSource, df: pd.DataFrame) -> None:
    """pandas renames a repeated column name (``a, a`` becomes ``a, a.1``): a name the file
    never had, on a column a later read would not find. A repeated name is refused."""
    if not any("." in str(c) for c in df.columns):
        return  # no renamed column: nothing to check (the usual case, free)
    header = pd.read_csv(io.BytesIO(raw.data), header=None, nrows=1, dtype=str).iloc[0]
    names = [str(n) for n in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"malformed CSV {raw.uri}: the header repeats the column name(s) "
            f"{', '.join(repr(n[:80]) for n in repeated[:5])}",
            hint="give each column its own name in the header line",
        )


def _check_parquet_names(raw: RawSource) -> None:
    """After a failed read: a schema that repeats a column name gets its own message
    (pyarrow's is a dump of the whole schema)."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(pa.BufferReader(raw.data)).names
    except (pa.ArrowException, OSError, ValueError):
        return
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"{raw.uri} repeats the column name(s) {', '.join(repr(n[:80]) for n in repeated[:5])}",
            hint="give each column its own name before writing the Parquet file",
        )
