import numpy as np
import pandas as pd
import pytest

from shipml.data import table_digest
from shipml.errors import DataError


@pytest.fixture
def big() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 30_000
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(0, 100, size=n),
            "c": rng.choice(["a", "b", None], size=n),
        }
    )


def test_every_row_counts_not_a_sample(big):
    before = table_digest(big)
    changed = big.copy()
    changed.loc[25_000, "x"] += 1e-9  # beyond MLflow's 10,000-row sample
    assert table_digest(changed) != before
    changed = big.copy()
    changed.loc[29_999, "c"] = "z"
    assert table_digest(changed) != before


def test_digest_is_stable_and_matches_csv_and_parquet_round_trips(big, tmp_path):
    digest = table_digest(big)
    assert digest == table_digest(big.copy())
    big.to_csv(tmp_path / "t.csv", index=False)
    big.to_parquet(tmp_path / "t.parquet", index=False)
    assert table_digest(pd.read_parquet(tmp_path / "t.parquet")) == digest
    assert table_digest(pd.read_csv(tmp_path / "t.csv")) == digest


def test_missing_is_not_the_same_as_empty_or_zero():
    assert table_digest(pd.DataFrame({"c": ["", "a"]})) != table_digest(
        pd.DataFrame({"c": [None, "a"]})
    )
    assert table_digest(pd.DataFrame({"x": [0.0, 1.0]})) != table_digest(
        pd.DataFrame({"x": [np.nan, 1.0]})
    )


def test_structure_matters_column_names_order_and_types():
    df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    assert table_digest(df) != table_digest(df[["b", "a"]])
    assert table_digest(df) != table_digest(df.rename(columns={"a": "z"}))
    assert table_digest(df) != table_digest(df.astype({"a": "float64"}))
    assert table_digest(df) != table_digest(df.iloc[::-1])


def test_negative_zero_and_categories_are_canonical():
    assert table_digest(pd.DataFrame({"x": [-0.0]})) == table_digest(pd.DataFrame({"x": [0.0]}))
    s = pd.DataFrame({"c": ["x", "y", None]})
    assert table_digest(s) == table_digest(s.astype("category"))


def test_mixed_column_is_a_clear_error():
    with pytest.raises(DataError, match="mixes strings with int"):
        table_digest(pd.DataFrame({"c": ["a", 1]}, dtype=object))


def test_a_csv_boolean_column_with_missing_values(tmp_path):
    (tmp_path / "b.csv").write_text("flag,v\nTrue,1\n,2\nFalse,3\n")
    df = pd.read_csv(tmp_path / "b.csv")
    digest = table_digest(df)
    df.to_parquet(tmp_path / "b.parquet")
    assert table_digest(pd.read_parquet(tmp_path / "b.parquet")) == digest


def test_every_kind_of_string_column_hashes_the_same_bytes():
    """Arrow-backed, Python-backed, object and categorical string columns (the first three
    digested by Arrow without a Python object per cell, the last through Python objects)
    give one digest, slices (Arrow offsets) included; an object column holding bytes is
    still refused."""
    values = ["a", None, "é✓", "", "zz"] * 3
    kinds = [
        pd.array(values, dtype="str"),
        pd.array(values, dtype="string[python]"),
        pd.Series(values, dtype=object),
        pd.Categorical(values),
    ]
    digests = {table_digest(pd.DataFrame({"s": kind})) for kind in kinds}
    sliced = {table_digest(pd.DataFrame({"s": kind}).iloc[3:11]) for kind in kinds}
    assert len(digests) == 1 and len(sliced) == 1 and digests != sliced
    with pytest.raises(DataError, match="mixes strings with bytes"):
        table_digest(pd.DataFrame({"s": pd.Series(["a", b"b"], dtype=object)}))


def test_a_column_of_one_unsupported_type_is_not_said_to_mix_strings():
    import decimal

    frame = pd.DataFrame({"d": [decimal.Decimal("1.5"), decimal.Decimal("2")]})
    with pytest.raises(DataError, match=r"column 'd' holds Decimal values .* cannot snapshot"):
        table_digest(frame)
    mixed = pd.DataFrame({"m": pd.Series(["a", decimal.Decimal("2")], dtype=object)})
    with pytest.raises(DataError, match="column 'm' mixes strings with Decimal values"):
        table_digest(mixed)
