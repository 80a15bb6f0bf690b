"""Data bundles: a snapshot as a folder whose digest is checked whenever it is read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from shipml.config import ProjectConfig
from shipml.data import DatasetStore
from shipml.data.bundle import open_bundle, public_uri, read_bundle, write_bundle
from shipml.errors import DataError


@pytest.fixture
def bundle_dir(config: ProjectConfig, tmp_path: Path) -> tuple[Path, str]:
    store = DatasetStore(config.artifact_root, config.root)
    snap = store.add("penguins", "data/penguins.csv")
    write_bundle(store, snap, tmp_path / "bundle")
    return tmp_path / "bundle", snap.digest


def test_bundle_keeps_the_store_digest(bundle_dir: tuple[Path, str]) -> None:
    folder, digest = bundle_dir
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["digest"] == digest and manifest["rows"] == 344
    bundle, df = read_bundle(folder)
    assert bundle.ref == "penguins@1" and len(df) == 344


def test_a_changed_cell_fails_the_read(bundle_dir: tuple[Path, str]) -> None:
    folder, digest = bundle_dir
    df = pd.read_parquet(folder / "data.parquet")
    df.loc[3, "species"] = "Gentoo"
    df.to_parquet(folder / "data.parquet", index=False)
    with pytest.raises(DataError) as info:
        read_bundle(folder)
    assert "does not match its manifest" in info.value.message
    assert digest in info.value.message
    assert "export the dataset again" in (info.value.hint or "")


def test_damaged_and_missing_bundles_are_clear_errors(
    bundle_dir: tuple[Path, str], tmp_path: Path
) -> None:
    folder, _ = bundle_dir
    (folder / "data.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot be read as Parquet"):
        read_bundle(folder)
    with pytest.raises(DataError, match=r"has no manifest\.json"):
        open_bundle(tmp_path / "nowhere")


def test_public_uri_drops_credentials() -> None:
    assert public_uri("https://user:s3cret@example.org/d.csv") == "https://example.org/d.csv"
    assert public_uri("s3://bucket/key.parquet") == "s3://bucket/key.parquet"
    assert public_uri("/data/x.csv") == "/data/x.csv"
