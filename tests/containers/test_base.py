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


def test_two_builds_of_a_new_base_at_once_bootstrap_it_once(monkeypatch, tmp_path: Path) -> None:
    """Two `shipml build` (or two test workers) on a fresh machine: the second waits for
    the first's base and reuses it (both bootstrapped Debian, side by side, for a minute)."""
    import threading
    import time
    import uuid

    import shipml.containers.base as base

    made: dict[str, str] = {}
    bootstraps = []

    class Images:  # an engine's image store: the part build_base uses
        def exists(self, tag: str) -> bool:
            return tag in made

        def inspect(self, tag: str):
            return type("Info", (), {"id": made[tag]})()

        def import_rootfs(self, rootfs: Path, tag: str, changes: list[str]) -> str:
            made[tag] = "sha256:" + "1" * 64
            return made[tag]

    def bootstrap(debootstrap, suite, rootfs, mirror, log):
        bootstraps.append(suite)
        time.sleep(0.5)  # a real one takes about 45 s
        rootfs.mkdir(parents=True)

    monkeypatch.setattr(base, "_debootstrap", lambda: "/usr/sbin/debootstrap")
    monkeypatch.setattr(base, "_bootstrap", bootstrap)
    tag = f"localhost/shipml-base-test:{uuid.uuid4().hex[:8]}"
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(build_base(Images(), tag=tag)))  # type: ignore[arg-type]
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(bootstraps) == 1 and sorted(r.built for r in results) == [False, True]
    assert {r.id for r in results} == {made[tag]}
