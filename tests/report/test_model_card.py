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
