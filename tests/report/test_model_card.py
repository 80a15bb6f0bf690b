"""report/model_card.py: writing a page a user named (-o FILE)."""

from pathlib import Path

import pytest

from shipml.errors import ShipmlError
from shipml.report.model_card import write_atomic


def test_a_page_is_written_whole_and_a_folder_or_a_full_disk_is_a_clear_error(tmp_path: Path):
    page = tmp_path / "cards" / "card.html"
    write_atomic(page, "<p>ok</p>")
    assert page.read_text() == "<p>ok</p>" and page.stat().st_mode & 0o044  # others may read
    with pytest.raises(ShipmlError, match="is a folder") as err:
        write_atomic(tmp_path / "cards", "x")
    assert err.value.hint == f"give a file name, e.g. {tmp_path / 'cards' / 'report.html'}"
    if Path("/dev/full").is_char_device():
        with pytest.raises(ShipmlError, match="cannot write /dev/full: No space left"):
            write_atomic(Path("/dev/full"), "x" * 100_000)
        assert Path("/dev/full").is_char_device()


def test_bootstrap_intervals_are_seeded_percentile_intervals_like_scipys():
    """95% percentile intervals from 200 resamples of the rows: the same for the same
    seed, and within Monte Carlo error of scipy's percentile bootstrap (9999 resamples);
    the accuracy's interval also brackets the binomial's (Wilson)."""
    import numpy as np
    from scipy import stats

    from shipml.report.model_card import intervals

    rng = np.random.default_rng(4)
    y = rng.choice(["a", "b"], 1000)
    labels = np.where(rng.random(1000) < 0.8, y, np.where(y == "a", "b", "a"))
    card = {"task": "classification", "y": y, "labels": labels}
    first = intervals(card)
    value, low, high = first["accuracy"]
    assert intervals(card) == first and intervals(card, seed=1) != first
    correct = (y == labels).astype(float)
    ref = stats.bootstrap(
        (correct,), np.mean, method="percentile", n_resamples=9999, random_state=0
    ).confidence_interval
    assert value == correct.mean() and low < value < high
    assert low == pytest.approx(ref.low, abs=0.012) and high == pytest.approx(ref.high, abs=0.012)
    wilson = stats.binomtest(int(correct.sum()), 1000).proportion_ci(method="wilson")
    assert low == pytest.approx(wilson.low, abs=0.012) and high == pytest.approx(
        wilson.high, abs=0.012
    )


HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def test_the_data_section_shows_a_hostile_catalog_and_tag_as_text(tmp_path: Path):
    """The dataset catalog is a file in the shared store and the names come from a run's
    tags: a catalog's version, rows and digest went into the card unescaped, and a tag
    naming no valid dataset stopped the whole card with a DataError."""
    import json
    from html.parser import HTMLParser
    from types import SimpleNamespace

    from shipml.report.model_card import _data

    catalog = tmp_path / "artifacts" / "datasets" / "catalog"
    catalog.mkdir(parents=True)
    snapshot = {
        "name": "penguins",
        "version": HOSTILE,
        "digest": HOSTILE,
        "source": HOSTILE,
        "rows": HOSTILE,
        "columns": 1,
        "created": "now",
        "source_sha256": "x",
        "schema": [{"name": HOSTILE, "type": HOSTILE, "nullable": True}],
    }
    (catalog / "penguins.json").write_text(json.dumps({"versions": [snapshot]}))
    config = SimpleNamespace(artifact_root=str(tmp_path / "artifacts"), root=tmp_path)
    entry = SimpleNamespace(datasets={"penguins": HOSTILE, f"{HOSTILE}": "abc"})
    page = _data(config, entry)  # type: ignore[arg-type]
    seen: set[str] = set()

    class Elements(HTMLParser):
        def handle_starttag(self, tag: str, attrs: object) -> None:
            seen.add(tag)

    Elements().feed(page)
    assert not seen & {"img", "script"}, page
    assert page.count("&lt;script&gt;alert(2)") >= 4  # version, rows, digest, tag
    assert "invalid dataset name" in page


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (
            "https://alice:s3cret@data.example/p.csv?X-Amz-Signature=abc",
            "https://data.example/p.csv?…",
        ),
        ("s3://bucket/p.parquet", "s3://bucket/p.parquet"),
        ("http://[broken/p.csv", "(not a URI)"),
    ],
)
def test_a_card_shows_a_data_source_without_its_secrets(tmp_path: Path, source, shown):
    """A card is mailed around: a source read with a password or a presigned URL showed
    them (the catalog keeps the source as given)."""
    import json
    from types import SimpleNamespace

    from shipml.report.model_card import _data

    catalog = tmp_path / "artifacts" / "datasets" / "catalog"
    catalog.mkdir(parents=True)
    snapshot = {
        "name": "penguins",
        "version": 1,
        "digest": "d" * 64,
        "source": source,
        "rows": 3,
        "columns": 0,
        "created": "now",
        "source_sha256": "x",
    }
    (catalog / "penguins.json").write_text(json.dumps({"versions": [snapshot]}))
    config = SimpleNamespace(artifact_root=str(tmp_path / "artifacts"), root=tmp_path)
    page = _data(config, SimpleNamespace(datasets={"penguins": "d" * 64}))  # type: ignore[arg-type]
    assert f"<code>{shown}</code>" in page
    assert "s3cret" not in page and "abc" not in page


@pytest.mark.parametrize(
    "raw", ["not json", "[]", "null", '{"study": 1}', '{"status": "x", "max_difference": "a"}']
)
def test_a_tag_shipml_did_not_write_is_said_not_a_traceback(raw: str):
    """The tuning record and the reproducibility verdict are version tags, anyone's to
    set: one that is not JSON, or not shipml's shape, raised out of `shipml report`."""
    from types import SimpleNamespace

    from shipml.report.model_card import _limits, _tuning

    tags = {"shipml.tune.record": raw, "shipml.reproducibility": raw}
    entry = SimpleNamespace(version=SimpleNamespace(tags=tags), predictions=None, tests=None)
    config = SimpleNamespace(tests=SimpleNamespace(data=SimpleNamespace(ranges={})))
    assert "is not one shipml wrote" in _tuning(config, entry)  # type: ignore[arg-type]
    assert "is not shipml&#x27;s" in _limits(config, entry)  # type: ignore[arg-type]
