"""Which types a cached skops output may hold: decided without importing anything, and
only for classes the project's own files define."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shipml.errors import UnsafeModelError
from shipml.pipeline.trust import SkopsTrust


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root on sys.path, as the pipeline loader puts it."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def _unimported(*names: str) -> None:
    for name in names:
        sys.modules.pop(name, None)


def test_only_classes_a_project_file_defines_are_trusted(root: Path):
    (root / "shapes.py").write_text(
        "import os\n"
        "from collections import Counter\n"
        "from subprocess import run as Runner\n\n\n"
        "class Square:\n    pass\n\n\n"
        "class Shadowed:\n    pass\n\n\n"
        "Shadowed = os.system\n\n\n"
        "def area(x):\n    return x * x\n"
    )
    _unimported("shapes")
    trust = SkopsTrust(root=root)
    assert trust.allowed("shapes.Square")
    assert not trust.allowed("shapes.Counter")  # imported there, not defined there
    assert not trust.allowed("shapes.Runner")
    assert not trust.allowed("shapes.Shadowed")  # the name is bound to something else
    assert not trust.allowed("shapes.area")  # a function: skops may call it with any args
    assert not trust.allowed("shapes.Missing")
    assert not SkopsTrust().allowed("shapes.Square")  # no project root: no project code
    assert "shapes" not in sys.modules  # decided without importing it


def test_nothing_is_imported_to_decide(root: Path, tmp_path: Path):
    ran = tmp_path / "imported.txt"
    pkg = root / "helpers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    (pkg / "models.py").write_text(f"open({str(ran)!r}, 'w').close()\n\nclass Model:\n    pass\n")
    _unimported("helpers", "helpers.models")
    assert SkopsTrust(root=root).allowed("helpers.models.Model")
    assert not ran.exists()
    assert "helpers" not in sys.modules


def test_files_others_can_write_are_not_project_code(root: Path):
    """The cache folder, the artifact store, .venv and .shipml lie under the root too."""
    source = "class Planted:\n    pass\n"
    for folder in ("cache/objects", ".venv/lib", ".shipml/cache"):
        (root / folder).mkdir(parents=True)
        (root / folder / "planted.py").write_text(source)
    _unimported("cache", "cache.objects", "cache.objects.planted", ".venv", ".shipml")
    trust = SkopsTrust(root=root, exclude=[root / "cache"])
    assert not trust.allowed("cache.objects.planted.Planted")
    assert SkopsTrust(root=root).allowed("cache.objects.planted.Planted")  # not excluded
    (root / "lib").mkdir()
    (root / "lib" / "planted.py").write_text(source)
    _unimported("lib", "lib.planted")
    assert trust.allowed("lib.planted.Planted")


def test_a_file_that_is_not_skops_is_refused_by_name():
    with pytest.raises(UnsafeModelError, match="not a readable skops file"):
        SkopsTrust().check(b"PK\x03\x04 not a zip", "cached output x.skops")
    with pytest.raises(UnsafeModelError, match="not a readable skops file"):
        SkopsTrust().check(b"", "cached output x.skops")
