import pandas as pd
import pytest

from shipml.data.source import parse_source, read_source
from shipml.errors import DataError


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"data file not found: nope\.csv"):
        read_source("nope.csv", tmp_path)


def test_malformed_csv_names_the_line(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(DataError) as err:
        parse_source(read_source("bad.csv", tmp_path))
    assert "malformed CSV" in err.value.message and "line 3" in err.value.message


def test_rows_longer_than_the_header_are_not_silently_indexed(tmp_path):
    (tmp_path / "wide.csv").write_text("a,b\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="1 more field"):
        parse_source(read_source("wide.csv", tmp_path))


def test_empty_and_unknown_formats(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        parse_source(read_source("e.csv", tmp_path))
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_source("x.xlsx", tmp_path)
    (tmp_path / "p.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet"):
        parse_source(read_source("p.parquet", tmp_path))


def test_file_uri_and_parquet_sources(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "s": ["x", None]})
    df.to_parquet(tmp_path / "d.parquet")
    raw = read_source((tmp_path / "d.parquet").as_uri())
    assert raw.uri.startswith("file://") and raw.format == "parquet"
    assert parse_source(raw).equals(pd.read_parquet(tmp_path / "d.parquet"))


# -- hostile sources -----------------------------------------------------------------------

import gzip  # noqa: E402

from shipml.data.source import SourceLimits, source_format  # noqa: E402


def test_the_format_comes_from_the_path_not_the_query_string(tmp_path):
    assert source_format("https://example.org/data.csv?x=1") == "csv"
    with pytest.raises(DataError, match="cannot tell the format"):
        source_format("https://example.org/notes.txt?name=.csv")
    with pytest.raises(DataError, match="cannot tell the format"):
        source_format("s3://bucket/notes.txt#.parquet")
    assert source_format("s3://bucket/notes.txt", "csv") == "csv"
    (tmp_path / "table.txt").write_text("a,b\n1,2\n")
    raw = read_source("table.txt", tmp_path, fmt="csv")
    assert parse_source(raw).shape == (1, 2)
    with pytest.raises(DataError, match="unknown format"):
        read_source("table.txt", tmp_path, fmt="xlsx")


def test_a_gzip_bomb_stops_at_the_row_limit_while_streaming(tmp_path):
    bomb = tmp_path / "bomb.csv.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        fh.write(b"a\n")
        for _ in range(50):
            fh.write(b"1\n" * 1_000_000)  # 50 M rows from a few hundred KB
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(DataError, match="more than 1,000 rows"):
        read_source("bomb.csv.gz", tmp_path, limits=SourceLimits(max_rows=1000))
    with pytest.raises(DataError, match="more than 10,000 bytes"):
        read_source("bomb.csv.gz", tmp_path, limits=SourceLimits(max_bytes=10_000))


def test_a_huge_field_is_refused_before_parsing(tmp_path):
    (tmp_path / "wide.csv").write_bytes(b"a,b\n1," + b"x" * 5_000_000 + b"\n2,y\n")
    with pytest.raises(DataError, match="line longer than 1,048,576 bytes"):
        read_source("wide.csv", tmp_path)


def test_parquet_rows_are_counted_from_the_footer(tmp_path):
    pd.DataFrame({"a": range(5000)}).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match="5,000 rows, more than 100"):
        read_source("d.parquet", tmp_path, limits=SourceLimits(max_rows=100))
    assert read_source("d.parquet", tmp_path).format == "parquet"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://127.0.0.1:9/data.csv", "reading data from the web is off"),
        ("https://example.org/data.csv", "reading data from the web is off"),
        ("zip://x.csv::file:///tmp/a.zip", "unsupported data source"),
        ("ftp://example.org/x.csv", "unsupported data source"),
        ("memory://x.csv", "unsupported data source"),
    ],
)
def test_only_plain_uris_of_known_stores(uri, message):
    with pytest.raises(DataError, match=message):
        read_source(uri)


def test_web_sources_when_allowed_fail_with_a_clear_error():
    with pytest.raises(DataError, match=r"http://127\.0\.0\.1:9/data\.csv"):
        read_source("http://127.0.0.1:9/data.csv", limits=SourceLimits(allow_http=True))


def test_limits_come_from_the_project(tmp_path):
    (tmp_path / "shipml.toml").write_text("[data]\nmax_rows = 2\n")
    (tmp_path / "d.csv").write_text("a\n1\n2\n3\n4\n")
    with pytest.raises(DataError, match="more than 2 rows"):
        read_source("d.csv", tmp_path)


@pytest.mark.parametrize("at", [0, 1, 40, 1 << 20, (1 << 20) - 3, (1 << 20) + 5, 3 << 19])
def test_an_over_long_line_is_found_wherever_it_lies(tmp_path, at):
    # Lines of 30 bytes around one of 101 bytes (the limit is 100), at offsets on, just
    # before and just after the 1 MiB boundaries the stream reads by.
    body = bytearray(b"x" * 29 + b"\n") * ((2 << 20) // 30)
    start = at - at % 30
    body[start : start + 30] = b"y" * 101 + b"\n"
    (tmp_path / "t.csv").write_bytes(b"a\n" + bytes(body))
    with pytest.raises(DataError, match="line longer than 100 bytes"):
        read_source("t.csv", tmp_path, limits=SourceLimits(max_line_bytes=100))
    body[start : start + 102] = b"y" * 100 + b"\n" + b"z"  # exactly at the limit: accepted
    (tmp_path / "t.csv").write_bytes(b"a\n" + bytes(body))
    read_source("t.csv", tmp_path, limits=SourceLimits(max_line_bytes=100))


def test_a_symlink_loop_is_a_clear_error(tmp_path):
    (tmp_path / "loop.csv").symlink_to(tmp_path / "loop.csv")
    with pytest.raises(DataError, match=r"cannot resolve the path 'loop\.csv'") as err:
        read_source("loop.csv", tmp_path)
    assert "symbolic link" in (err.value.hint or "")


def test_non_utf8_csv_says_so_and_how_to_convert(tmp_path):
    (tmp_path / "latin.csv").write_bytes(b"name,n\nJos\xe9,1\n")
    with pytest.raises(DataError, match="is not UTF-8 text") as err:
        parse_source(read_source("latin.csv", tmp_path))
    assert "UTF-8" in (err.value.hint or "")


def test_a_repeated_column_name_is_refused_not_renamed(tmp_path):
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataError, match=r"repeats the column name.*'a'"):
        parse_source(read_source("dup.csv", tmp_path))
    (tmp_path / "dots.csv").write_text("a,a.1\n1,2\n")  # dotted names of its own: kept
    assert list(parse_source(read_source("dots.csv", tmp_path)).columns) == ["a", "a.1"]


def test_a_parquet_file_that_repeats_a_column_name_says_so(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["a", "a"]), tmp_path / "d.pq")
    with pytest.raises(DataError, match=r"repeats the column name.*'a'") as err:
        parse_source(read_source("d.pq", tmp_path))
    assert "\n" not in err.value.message


def test_a_file_whose_name_holds_a_space_or_a_percent_sign_is_read(tmp_path):
    # A path becomes a file:// URI ('a%20b'); fsspec looked for a name with '%20' in it.
    for name in ("my data.csv", "a b%20c.csv", "50%.csv"):
        (tmp_path / name).write_text("a,b\n1,2\n")
        assert parse_source(read_source(name, tmp_path))["b"].tolist() == [2], name


def test_a_folder_or_a_missing_path_says_so_before_any_format(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="data is a folder, not a data file"):
        read_source("data", tmp_path)
    with pytest.raises(DataError, match="data file not found: new"):
        read_source("new", tmp_path)  # no ending: was "cannot tell the format"
