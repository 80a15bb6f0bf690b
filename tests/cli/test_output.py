"""cli/output.py: --json output is valid JSON whatever the data holds."""

from __future__ import annotations

import json
import math
from pathlib import Path

from shipml.cli.output import as_json


def test_json_output_holds_no_nan_and_turns_paths_into_text():
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "p": Path("/x/y"), 3: "int key"}
    text = as_json(data)
    assert json.loads(text) == {"a": None, "b": [None, None, 1.5], "p": "/x/y", "3": "int key"}
    assert "NaN" not in text and "Infinity" not in text


def test_a_long_path_is_never_cut_with_newlines():
    from shipml.cli.output import stderr, stdout

    uri = "file:///tmp/p/.shipml/artifacts/mlruns/" + "c" * 32 + "/artifacts/report/1/card.html"
    for console in (stdout, stderr):
        saved = console._width
        console._width = 40  # a narrow terminal: the terminal wraps it, the text stays whole
        try:
            with console.capture() as captured:
                console.print(f"attached to p/1: {uri}")
        finally:
            console._width = saved
        assert captured.get() == f"attached to p/1: {uri}\n"
