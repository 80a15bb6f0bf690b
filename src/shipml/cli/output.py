"""Console, shared CLI state and small rendering helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:  # loaded by the commands that need it: `shipml --help` stays quick
    from shipml.config import ProjectConfig

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


@dataclass
class State:
    debug: bool = False
    project: str | None = None


state = State()


def project_config() -> ProjectConfig:
    """The configuration of the project the command runs in (``-C`` or the cwd upwards)."""
    from shipml.config import find_root, load_config

    start = Path(state.project).resolve() if state.project else None
    return load_config(find_root(start))


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
