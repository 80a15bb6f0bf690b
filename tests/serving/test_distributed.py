"""`shipml predict --engine dask`: partitions scored on the workers of a Dask cluster
(2 local worker processes), one model per worker, parts written as they finish, one
audit record per batch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipml.audit import open_log
from shipml.config import load_config
from shipml.errors import DataError, ServingError
from shipml.serving.distributed import MANIFEST, predict_distributed
from tests.conftest import shipml

SMALL = 0.02  # MB: a few hundred rows per partition, so there are several


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A local Dask cluster of 2 worker processes; its scheduler's address."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    yield cluster.scheduler_address
    cluster.close()


def _rows(penguins_data, times: int = 12) -> pd.DataFrame:
    X, _ = penguins_data
    return pd.concat([X] * times, ignore_index=True)


def _read(folder: Path) -> pd.DataFrame:
    manifest = json.loads((folder / MANIFEST).read_text())
    frames = []
    for part in manifest["parts"]:
        data = (folder / part["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part["sha256"]
        file = folder / part["file"]
        frames.append(pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_partitions_scored_on_two_workers_equal_one_local_scoring(
    tmp_path, scheduler, penguins_package, penguins_data, suffix
):
    rows = _rows(penguins_data)
    source = tmp_path / f"in.{suffix}"
    if suffix == "csv":
        rows.to_csv(source, index=False)
    else:
        rows.to_parquet(source, row_group_size=300)
    out = tmp_path / "scored.parquet"
    run = predict_distributed(
        penguins_package.path,
        str(source),
        str(out),
        name="penguins",
        version="1",
        scheduler=scheduler,
        partition_mb=SMALL,
    )
    assert run.rows == len(rows) and len(run.parts) > 2
    assert len({p["worker"] for p in run.parts}) == 2  # both workers scored partitions
    scored = _read(out)
    labels, proba = penguins_package.predict(rows)
    assert scored["prediction"].tolist() == labels.tolist()
    assert np.allclose(scored.filter(like="probability_").to_numpy(), proba, atol=1e-6)
    assert scored["island"].tolist() == rows["island"].tolist()  # in order, nothing lost
    assert run.input_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    joined = "".join(p["sha256"] for p in sorted(run.parts, key=lambda p: p["index"]))
    assert run.output_sha256 == hashlib.sha256(joined.encode()).hexdigest()
    assert not list(tmp_path.glob("scored.parquet.partial-*"))


def test_a_bad_row_names_its_partition_and_leaves_no_output(
    tmp_path, scheduler, penguins_package, penguins_data
):
    rows = _rows(penguins_data)
    rows["body_mass_g"] = rows["body_mass_g"].astype(object)
    rows.loc[2000, "body_mass_g"] = "heavy"
    source = tmp_path / "in.csv"
    rows.to_csv(source, index=False)
    out = tmp_path / "scored.csv"
    pattern = rf"partition \d+ \(bytes \d+\+\): cannot read {source}: .*'heavy'"
    with pytest.raises(DataError, match=pattern):
        predict_distributed(
            penguins_package.path,
            str(source),
            str(out),
            name="penguins",
            version="1",
            scheduler=scheduler,
            partition_mb=SMALL,
        )
    assert not out.exists() and not list(tmp_path.glob("scored.csv.partial-*"))
    stranger = tmp_path / "mine"
    stranger.mkdir()
    with pytest.raises(DataError, match="not the output of a shipml batch"):
        predict_distributed(
            penguins_package.path, str(source), str(stranger), name="p", version="1"
        )
    with pytest.raises(DataError, match="cannot tell the format"):
        predict_distributed(
            penguins_package.path, str(tmp_path / "in.txt"), str(out), name="p", version="1"
        )


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, penguins_package, penguins_data):
    from tests.serving.conftest import free_port

    source = tmp_path / "in.csv"
    penguins_data[0].to_csv(source, index=False)
    with pytest.raises(ServingError, match="no Dask scheduler answers"):
        predict_distributed(
            penguins_package.path,
            str(source),
            str(tmp_path / "o.csv"),
            name="p",
            version="1",
            scheduler=f"tcp://127.0.0.1:{free_port()}",
            connect_timeout=2,
        )


def test_cli_engine_dask_on_a_local_cluster_writes_one_audit_record(
    project: Path, penguins_package, penguins_data
):
    rows = _rows(penguins_data)
    source = project / "batch.csv"
    rows.to_csv(source, index=False)
    done = shipml(
        "predict",
        str(penguins_package.path),
        "batch.csv",
        "-o",
        "scored.parquet",
        "--engine",
        "dask",
        "--workers",
        "2",
        "--partition-mb",
        str(SMALL),
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    assert f"scored {len(rows):,} rows in" in done.stdout and "on 2 dask worker(s)" in done.stdout
    assert len(_read(project / "scored.parquet")) == len(rows)
    log = open_log(load_config(project), writer=False)
    try:
        records = [json.loads(raw) for _, _, raw in log.entries()]
        batches = [r for r in records if r.get("kind") == "batch"]
    finally:
        log.close()
    assert len(batches) == 1  # one record for the batch, not one per row
    assert batches[0]["rows"] == len(rows)
    assert batches[0]["input"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    refused = shipml(
        "predict",
        str(penguins_package.path),
        "batch.csv",
        "-o",
        "x",
        "--engine",
        "ray",
        cwd=project,
    )
    assert refused.returncode == 9 and "unknown engine 'ray'" in refused.stderr
