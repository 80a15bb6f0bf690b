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
