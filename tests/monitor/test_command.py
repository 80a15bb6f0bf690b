"""`shipml monitor` on a package folder and a file of rows: what it prints is text."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import shipml_here
from tests.monitor.conftest import holdout_rows


def test_an_output_folder_named_like_markup_is_printed_as_it_is(monitored_package, tmp_path):
    """Rich read "[/x]" in the folder's name as a closing tag: MarkupError, a traceback,
    after the report was written."""
    (tmp_path / "shipml.toml").write_text('[project]\nname = "x"\n\n[audit]\nenabled = false\n')
    frame, _ = holdout_rows(monitored_package)
    frame.to_parquet(tmp_path / "rows.parquet")
    out = tmp_path / "[/x] [red]"
    args = ["--data", "rows.parquet", "-o", str(out)]
    run = shipml_here("monitor", str(monitored_package.path), *args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"report   {out}/monitor.json" in run.stdout.replace("\n", "")
    assert (Path(out) / "monitor.html").is_file()
