"""The model under test, handed from `shipml test` to its pytest process: taken only for the
reference it was resolved for, else the registry answers."""

from __future__ import annotations

from pathlib import Path

from shipml.testing.subject import _handed_over, handoff
from shipml.tracking import ResolvedModel, VersionInfo


def _resolved(tmp_path: Path) -> ResolvedModel:
    info = VersionInfo("penguins", "3", str(tmp_path), "run1", ["challenger"], {"k": "v"})
    return ResolvedModel(tmp_path, "penguins", "3", None, True, info)


def test_the_model_is_taken_back_whole_for_the_same_reference(tmp_path: Path):
    file = tmp_path / "model.json"
    handoff(_resolved(tmp_path), {"champion": "2", "challenger": "3"}, file)
    model, aliases = _handed_over(file, "penguins/3")
    assert model == _resolved(tmp_path) and model.ref == "penguins/3"
    assert aliases == {"champion": "2", "challenger": "3"}


def test_another_reference_or_a_damaged_file_is_not_taken(tmp_path: Path):
    file = tmp_path / "model.json"
    handoff(_resolved(tmp_path), {}, file)
    assert _handed_over(file, "penguins/2") is None
    assert _handed_over(file, None) is None
    for damaged in (
        "",
        "{",
        "[]",
        '{"ref": "penguins/3"}',
        '{"ref": "penguins/3", "path": "x", "info": {"name": 1}, "aliases": null}',
        '{"ref": "penguins/3", "path": "x", "info": null, "aliases": ["champion"]}',
        '{"ref": "penguins/3", "path": "x", "info": null, "aliases": {"champion": 2}}',
    ):
        file.write_text(damaged)
        assert _handed_over(file, "penguins/3") is None, damaged
    assert _handed_over(tmp_path / "missing.json", "penguins/3") is None


def test_a_package_folder_has_no_registry_record(tmp_path: Path):
    file = tmp_path / "model.json"
    handoff(ResolvedModel(tmp_path, tmp_path.name, "1"), None, file)
    model, aliases = _handed_over(file, str(tmp_path))
    assert model.path == tmp_path and model.info is None and not model.registered
    assert aliases is None
