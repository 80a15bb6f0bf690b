"""Base images from Debian's packages, without a registry."""

from __future__ import annotations

from pathlib import Path

from shipml.containers import Engine, build_base
from shipml.containers.base import apt_mirror
from tests.containers.images import podman


def test_apt_mirror_reads_both_source_formats(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert apt_mirror(tmp_path) == "http://deb.debian.org/debian"
    (tmp_path / "sources.list").write_text(
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://mirror.example/debian bookworm main\n"
    )
    assert apt_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm\n"
    )
    assert apt_mirror(tmp_path) == "http://deb.example/debian"


def test_base_image_is_made_once_and_reused(engine: Engine, base_image: str) -> None:
    again = build_base(engine)
    assert again.tag == base_image == "localhost/shipml-base:bookworm"
    assert not again.built and again.seconds < 10
    python = podman(
        "run",
        "--rm",
        base_image,
        "python3",
        "-c",
        "import sys, venv, ssl; print(sys.version_info[:2] >= (3, 11))",
    )
    assert python.stdout.strip() == "True", python.stderr
    labels = engine.inspect(base_image).labels
    assert labels["io.shipml.base.suite"] == "bookworm"
