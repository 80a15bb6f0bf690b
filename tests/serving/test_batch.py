"""`shipml predict`: batch scoring of CSV and Parquet files, streamed in chunks."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shipml_here


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_scores_every_row_in_chunks(tmp_path, penguins_package, penguins_data, suffix):
    X, _ = penguins_data
    source = tmp_path / f"in.{suffix}"
    X.to_csv(source, index=False) if suffix == "csv" else X.to_parquet(source)
    out = tmp_path / f"out.{suffix}"
    result = shipml_here(
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
    tmp_path, penguins_strict_package, penguins_data
):
    X, _ = penguins_data
    bad = X.copy()
    bad.loc[120, "island"] = "Atlantis"
    source = tmp_path / "in.csv"
    bad.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    result = shipml_here(
        "predict",
        str(penguins_strict_package.path),
        str(source),
        "-o",
        str(out),
        "--chunk-rows",
        "100",
        cwd=tmp_path,
    )
    assert result.returncode == 5
    assert "row 120:" in result.stderr and "island" in result.stderr
    assert "unknown category 'Atlantis'" in result.stderr
    assert not out.exists() and list(tmp_path.glob(".out.csv*")) == []


def test_serve_resolves_registry_references_in_a_project(project):
    ran = shipml_here("run", "-p", "n_estimators=5", "--alias", "challenger", cwd=project)
    assert ran.returncode == 0, ran.stderr
    source = project / "data" / "penguins.csv"
    out = project / "scored.csv"
    result = shipml_here("predict", "penguins@challenger", str(source), "-o", str(out), cwd=project)
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
    result = shipml_here(
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


def test_on_error_flag_scores_the_rest_and_flags_the_unseen_category(
    tmp_path, penguins_strict_package, penguins_data
):
    X, _ = penguins_data
    bad = X.copy()
    bad.loc[7, "island"] = "Atlantis"
    bad.loc[130, "island"] = "Atlantis"
    source = tmp_path / "in.csv"
    bad.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    args = ["predict", str(penguins_strict_package.path), str(source), "-o", str(out)]
    result = shipml_here(*args, "--on-error", "flag", "--chunk-rows", "100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 row(s) flagged" in " ".join(result.stdout.split())
    scored = pd.read_csv(out)
    assert len(scored) == len(X)
    flagged = scored["error"].notna()
    assert flagged.sum() == 2 and flagged[[7, 130]].all()
    assert "unknown category 'Atlantis'" in scored.loc[7, "error"]
    assert scored.loc[~flagged, "prediction"].notna().all()
    assert scored.loc[flagged, ["prediction", "probability_Adelie"]].isna().all().all()
    labels, _ = penguins_strict_package.predict(X.drop(index=[7, 130]))
    assert scored.loc[~flagged, "prediction"].tolist() == labels.tolist()


def test_on_error_skip_leaves_the_row_out(tmp_path, penguins_strict_package, penguins_data):
    from shipml.serving.batch import predict_file
    from shipml.serving.predictor import Predictor

    X, _ = penguins_data
    bad = X.copy()
    bad.loc[3, "sex"] = "unknown"
    source = tmp_path / "in.parquet"
    bad.to_parquet(source)
    predictor = Predictor.load(penguins_strict_package.path)
    result = predict_file(predictor, source, tmp_path / "out.parquet", on_error="skip")
    assert result.refused == 1 and result.rows == len(X) - 1
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert len(scored) == len(X) - 1 and "unknown" not in scored["sex"].tolist()


def test_the_output_is_never_the_input_and_its_name_says_the_format(
    tmp_path, penguins_package, penguins_data
):
    X, _ = penguins_data
    source = tmp_path / "in.csv"
    X.to_csv(source, index=False)
    before = source.read_bytes()
    (tmp_path / "link.csv").symlink_to(source)
    for out, says in [
        (source, "is the input file"),
        (tmp_path / "link.csv", "is the input file"),  # the same file by another name
        (tmp_path / "scores.json", "cannot tell which format to write"),
    ]:
        package = str(penguins_package.path)
        result = shipml_here("predict", package, str(source), "-o", str(out), cwd=tmp_path)
        assert result.returncode == 5 and says in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert source.read_bytes() == before
    assert not (tmp_path / "scores.json").exists()

    gz = tmp_path / "scores.csv.gz"
    package = str(penguins_package.path)
    result = shipml_here("predict", package, str(source), "-o", str(gz), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(gz)  # gzip, as its name says
    assert scored["prediction"].tolist() == penguins_package.predict(X)[0].tolist()
