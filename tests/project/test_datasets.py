"""project/datasets.py: the snapshots as data, nothing cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.errors import DataError
from shipml.project.datasets import describe_dataset, list_datasets


def test_listing_and_description_carry_full_digests_and_every_version(tmp_path: Path):
    (tmp_path / "shipml.toml").write_text('[project]\nname = "p"\n')
    config = load_config(tmp_path, environ={})
    assert list_datasets(config) == []
    (tmp_path / "a.csv").write_text("x,y\n1,a\n2,b\n")
    from shipml.data import DatasetStore

    store = DatasetStore(config.artifact_root, config.root)
    first = store.add("d", str(tmp_path / "a.csv"))
    (tmp_path / "a.csv").write_text("x,y\n1,a\n2,b\n3,c\n")
    second = store.add("d", str(tmp_path / "a.csv"))
    [row] = list_datasets(config)
    assert row["sha256"] == second.digest and len(row["sha256"]) == 64
    assert (row["version"], row["rows"], row["columns"]) == (2, 3, 2)
    shown = describe_dataset(config, "d@1")
    assert shown["ref"] == "d@1" and shown["sha256"] == first.digest and shown["rows"] == 2
    assert [v["sha256"] for v in shown["versions"]] == [first.digest, second.digest]
    with pytest.raises(DataError):
        describe_dataset(config, "nosuch")
