"""Small file helpers shared by every layer."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks (flat memory)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def replacing_folder(target: Path, *, prefix: str = ".tmp-") -> Iterator[Path]:
    """A fresh folder next to ``target`` to write into. When the block ends without an
    error it takes ``target``'s place (a reader never sees half a folder); otherwise it
    is removed and ``target`` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_file(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write ``path`` whole: a reader sees the old file or the new one (``durable``: the
    new bytes are fsynced before they take its place)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:  # a full disk: no partial file left to fill it further
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def output_file(path: Path) -> Iterator[Path]:
    """Where to write a file a user named (``-o FILE``): a partial file next to it that
    takes its place once the block ends without an error, so a reader never sees half of
    it and a failure leaves the old one as it was. A path that exists and is not a
    regular file (``/dev/stdout``, a named pipe) is written in place: replacing it would
    put a file where the device or pipe was. A symbolic link to a file keeps its link and
    its target is replaced."""
    try:
        mode = os.stat(path).st_mode  # follows links, /proc/self/fd/1 too
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a folder")
    if mode is not None and not stat.S_ISREG(mode):
        yield path
        return
    target = Path(os.path.realpath(path)) if mode is not None else path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block: a
    read-modify-write that processes on one machine do one at a time. Where the platform
    has no ``fcntl`` (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux or macOS
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def sweep_leftovers(folder: Path, prefix: str = ".tmp-", older_than_s: float = 3600.0) -> int:
    """Remove what writes killed midway (``kill -9``, a power cut) left in ``folder``:
    the files and folders named ``prefix...`` not touched for ``older_than_s`` (a write
    in progress now is younger). Returns how many were removed; never raises."""
    removed, now = 0, time.time()
    try:
        leftovers = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return 0
    for path in leftovers:
        try:
            if now - path.lstat().st_mtime < older_than_s:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


def finite_json(value: Any) -> Any:
    """``value`` (dicts, lists, scalars, NumPy scalars as Python ones) with every NaN or
    infinity as None, for standard JSON: ``NaN`` is refused by JSON parsers, browsers'
    included."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # a NumPy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value
