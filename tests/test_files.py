"""files.py: a file a user names is written whole, and a device or pipe stays one."""

import os
import stat
import threading
from pathlib import Path

import pytest

from shipml.files import output_file


def test_a_regular_file_is_replaced_whole_or_left_as_it_was(tmp_path: Path):
    target = tmp_path / "out" / "a.txt"  # a missing folder is made
    with output_file(target) as tmp:
        assert tmp != target and tmp.parent == target.parent
        tmp.write_text("new")
        assert not target.exists()  # nobody sees half of it
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), output_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "new" and os.listdir(target.parent) == ["a.txt"]


def test_a_link_to_a_file_keeps_its_link_and_its_target_is_replaced(tmp_path: Path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with output_file(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_named_pipe_is_written_in_place_not_replaced_by_a_file(tmp_path: Path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    read: list[bytes] = []
    reader = threading.Thread(target=lambda: read.append(pipe.read_bytes()))
    reader.start()
    with output_file(pipe) as tmp:
        assert tmp == pipe
        tmp.write_bytes(b"streamed")
    reader.join(timeout=10)
    assert read == [b"streamed"] and stat.S_ISFIFO(os.stat(pipe).st_mode)


def test_a_folder_is_refused(tmp_path: Path):
    with pytest.raises(IsADirectoryError), output_file(tmp_path):
        pass


def test_finite_json_turns_nan_and_numpy_scalars_into_plain_json_values():
    import json

    import numpy as np

    from shipml.files import finite_json

    data = {"a": float("nan"), "b": [np.float32(1.5), np.float64("inf"), np.int64(3)], "c": (1,)}
    clean = finite_json(data)
    assert clean == {"a": None, "b": [1.5, None, 3], "c": [1]}
    assert type(clean["b"][2]) is int
    json.dumps(clean, allow_nan=False)  # strict JSON


def test_a_file_that_cannot_be_written_whole_leaves_nothing_behind(tmp_path: Path):
    from shipml.files import replace_file
    from tests.conftest import files_limited_to

    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with files_limited_to(1024), pytest.raises(OSError):
        replace_file(target, b"x" * 4096)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no partial file
    assert target.read_bytes() == b"old"
