"""`shipml predict`: batch scoring of CSV and Parquet files, streamed in chunks."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shipml


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_scores_every_row_in_chunks(tmp_path, penguins_package, penguins_data, suffix):
    X, _ = penguins_data
    source = tmp_path / f"in.{suffix}"
    X.to_csv(source, index=False) if suffix == "csv" else X.to_parquet(source)
    out = tmp_path / f"out.{suffix}"
    result = shipml(
        "predict",
        str(penguins_package.path),
        str(source),
        "-o",
        str(out),
        "--chunk-rows",
        "50",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"scored {len(X)} rows in" in result.stdout
    scored = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
    labels, proba = penguins_package.predict(X)
    assert scored["prediction"].tolist() == labels.tolist()
    assert np.allclose(
        scored[["probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]].to_numpy(),
        proba,
        atol=1e-6,
    )
    assert scored["island"].tolist() == X["island"].tolist()  # input columns kept


def test_bad_rows_name_the_chunk_and_leave_no_partial_output(
    tmp_path, penguins_package, penguins_data
):
    X, _ = penguins_data
    bad = X.copy()
    bad.loc[120, "island"] = "Atlantis"
    source = tmp_path / "in.csv"
    bad.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    result = shipml(
        "predict",
        str(penguins_package.path),
        str(source),
        "-o",
        str(out),
        "--chunk-rows",
        "100",
        cwd=tmp_path,
    )
    assert result.returncode == 5
    assert "rows 100-199" in result.stderr and "unknown category 'Atlantis'" in result.stderr
    assert not out.exists() and list(tmp_path.glob(".out.csv*")) == []


def test_serve_resolves_registry_references_in_a_project(project):
    ran = shipml("run", "-p", "n_estimators=5", "--alias", "challenger", cwd=project)
    assert ran.returncode == 0, ran.stderr
    source = project / "data" / "penguins.csv"
    out = project / "scored.csv"
    result = shipml("predict", "penguins@challenger", str(source), "-o", str(out), cwd=project)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out)) == 344


def test_a_column_empty_early_in_a_big_csv_is_read_by_its_signature_type(
    tmp_path, penguins_package, penguins_data
):
    X, _ = penguins_data
    big = pd.concat([X] * 60, ignore_index=True)
    big.loc[: len(big) - 200, "sex"] = None  # empty for most of the file, then filled
    source = tmp_path / "big.csv"
    big.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    result = shipml(
        "predict",
        str(penguins_package.path),
        str(source),
        "-o",
        str(out),
        "--chunk-rows",
        "1000",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out)) == len(big)
