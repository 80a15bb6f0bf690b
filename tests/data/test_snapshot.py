from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from shipml.data import DatasetStore, table_digest
from shipml.data.source import RawSource
from shipml.errors import DataError


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "d.csv"
    pd.DataFrame({"x": [1.5, None, 3.0], "c": ["a", None, "b"], "n": [1, 2, 3]}).to_csv(
        path, index=False
    )
    return path


def test_add_records_digest_schema_profile_and_source(tmp_path, csv):
    store = DatasetStore(str(tmp_path / "art"), tmp_path)
    snap = store.add("d", "d.csv")
    assert snap.version == 1 and snap.rows == 3 and snap.columns == 3
    assert snap.digest == table_digest(pd.read_csv(csv))
    assert snap.source == csv.resolve().as_uri()
    schema = {c["name"]: c for c in snap.schema}
    assert schema["c"]["type"] == "string" and schema["c"]["categories"] == ["a", "b"]
    assert schema["x"]["nullable"] and not schema["n"]["nullable"]
    assert snap.profile["columns"]["x"]["missing"] == 1
    assert sum(snap.profile["columns"]["n"]["histogram"]["counts"]) == 3
    stored = tmp_path / "art" / "datasets" / "objects" / f"sha256-{snap.digest}" / "data.parquet"
    assert stored.is_file()
    assert table_digest(store.load(snap)) == snap.digest


def test_versions_follow_content(tmp_path, csv):
    store = DatasetStore(str(tmp_path / "art"), tmp_path)
    first = store.add("d", str(csv))
    assert store.add("d", str(csv)).version == 1  # same bytes
    csv.write_text(csv.read_text().replace("1.5", "1.25"))
    second = store.add("d", str(csv))
    assert second.version == 2 and second.digest != first.digest
    assert store.get("d@1").digest == first.digest
    assert store.get("d").version == 2
    assert [s.name for s in store.latest()] == ["d"]


def test_unknown_name_and_version(tmp_path, csv):
    store = DatasetStore(str(tmp_path / "art"), tmp_path)
    with pytest.raises(DataError, match="unknown dataset 'd'"):
        store.get("d")
    store.add("d", str(csv))
    with pytest.raises(DataError, match="has no version 7"):
        store.get("d@7")
    with pytest.raises(DataError, match="invalid dataset version"):
        store.get("d@x")


def test_adding_again_repairs_a_snapshot_whose_data_went_missing(tmp_path, csv):
    store = DatasetStore(str(tmp_path / "art"), tmp_path)
    snap = store.add("d", str(csv))
    Path(store.data_uri(snap)).unlink()
    with pytest.raises(DataError, match="missing from the store"):
        store.load(snap)
    assert store.add("d", str(csv)).version == 1
    assert table_digest(store.load(snap)) == snap.digest


def test_a_modified_snapshot_is_detected_on_read(tmp_path, csv):
    store = DatasetStore(str(tmp_path / "art"), tmp_path)
    snap = store.add("d", str(csv))
    path = Path(store.data_uri(snap))
    df = pd.read_parquet(path)
    df.loc[0, "x"] = 99.0
    df.to_parquet(path, index=False)
    with pytest.raises(DataError, match="is corrupt"):
        store.load(snap)


def test_an_error_in_the_digest_thread_leaves_no_snapshot(tmp_path):
    # The digest runs in a thread during the profile: its DataError must reach the caller,
    # and neither data nor catalog may be written.
    store = DatasetStore(str(tmp_path / "art"), tmp_path)
    frame = pd.DataFrame({"x": [1.0, 2.0], "m": pd.Series(["a", 1], dtype=object)})
    raw = RawSource(uri="file:///mixed.csv", format="csv", data=b"")
    with ThreadPoolExecutor(3) as pool, pytest.raises(DataError, match="mixes strings"):
        store._snapshot(pool, "mixed", raw, frame, None, "")
    assert store.names() == []
    assert not list((tmp_path / "art").rglob("*.parquet"))


def test_a_snapshot_whose_file_is_no_parquet_is_a_clear_error(tmp_path, csv):
    store = DatasetStore(str(tmp_path / "art"), tmp_path)
    snap = store.add("d", str(csv))
    Path(store._object(snap.digest, "data.parquet")).write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"snapshot d@1 is corrupt: .* is not readable Parquet"):
        store.load(snap)
    Path(store._object(snap.digest, "data.parquet")).unlink()  # what the hint says to do
    store.add("d", str(csv))
    assert table_digest(store.load(snap)) == snap.digest


@pytest.mark.parametrize("text", ['{"name": ', '{"name": "d", "versions": [{"x": 1}]}', "[]"])
def test_a_damaged_catalog_is_a_clear_error_and_is_not_overwritten(tmp_path, csv, text):
    store = DatasetStore(str(tmp_path / "art"), tmp_path)
    store.add("d", str(csv))
    catalog = tmp_path / "art" / "datasets" / "catalog" / "d.json"
    catalog.write_text(text)
    for call in (store.latest, lambda: store.get("d"), lambda: store.add("d", str(csv))):
        with pytest.raises(DataError, match=r"the catalog of dataset 'd' .* is damaged"):
            call()
    assert catalog.read_text() == text


def test_two_adds_at_once_each_get_their_own_version(tmp_path, monkeypatch):
    import threading

    for i in (1, 2):
        pd.DataFrame({"x": [i, i + 1]}).to_csv(tmp_path / f"{i}.csv", index=False)
    both_read = threading.Barrier(2)
    snapshot = DatasetStore._snapshot

    def in_step(self, *args, **kwargs):  # both have read the catalog before either writes
        made = snapshot(self, *args, **kwargs)
        both_read.wait(timeout=30)
        return made

    monkeypatch.setattr(DatasetStore, "_snapshot", in_step)
    store = DatasetStore(str(tmp_path / "art"), tmp_path)
    with ThreadPoolExecutor(2) as pool:
        added = list(pool.map(lambda i: store.add("d", str(tmp_path / f"{i}.csv")), (1, 2)))
    catalog = {s.version: s.digest for s in store.versions("d")}
    assert sorted(catalog) == [1, 2]
    assert {catalog[s.version] for s in added} == {s.digest for s in added}
    assert {s.version for s in added} == {1, 2}


def test_a_source_s_credentials_are_never_recorded_nor_shown(tmp_path, csv):
    """A web source given with a password and a presigned URL's signature (served for
    real over HTTP): the snapshot, the catalog and error messages keep the address
    without them; adding it again with a fresh signature is the same source."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "shipml.toml").write_text("[data]\nallow_http = true\n")
    base = f"http://alice:s3cret-pw@127.0.0.1:{server.server_port}"
    try:
        store = DatasetStore(str(tmp_path / "art"), tmp_path)
        signed = f"{base}/d.csv?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=f00dcafe&v=2"
        snap = store.add("d", signed)
        assert snap.source == (
            f"http://127.0.0.1:{server.server_port}/d.csv"
            "?X-Amz-Credential=***&X-Amz-Signature=***&v=2"
        )
        again = store.add("d", signed.replace("f00dcafe", "beefbeef"))
        assert again.version == 1
        catalog = "".join(p.read_text() for p in (tmp_path / "art").rglob("*.json"))
        for secret in ("s3cret-pw", "alice", "f00dcafe", "AKIAEXAMPLE", "beefbeef"):
            assert secret not in catalog and secret not in snap.source
        with pytest.raises(DataError) as err:
            store.add("e", f"{base}/missing.csv?token=tok-secret-123")
        shown = err.value.message + (err.value.hint or "")
        assert "127.0.0.1" in shown and "s3cret-pw" not in shown and "tok-secret" not in shown
    finally:
        server.shutdown()
