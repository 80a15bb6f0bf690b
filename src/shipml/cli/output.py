"""Console, shared CLI state and small rendering helpers."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:  # loaded by the commands that need it: `shipml --help` stays quick
    from shipml.config import ProjectConfig

# soft_wrap: a line longer than the terminal is left for the terminal to wrap, never cut
# with newlines, so a path, URI or digest copied from the output is whole (tables and
# panels still fit the width).
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


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


def told(output: Path) -> Console:
    """Where to say what a command wrote to ``output``: stdout, or stderr when the output
    itself is a stream (``-o /dev/stdout | jq`` must get the data alone)."""
    import os
    import stat

    try:
        regular = stat.S_ISREG(os.stat(output).st_mode)
    except OSError:
        regular = True
    return stdout if regular else stderr


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def as_json(data: Any) -> str:
    """``data`` as JSON: numbers that JSON cannot hold (NaN, ±inf) become null; anything
    else that is not JSON (paths, dates) becomes its text."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=2, default=str, allow_nan=False)


def print_json(data: Any) -> None:
    """Machine-readable output (``--json``): JSON alone on stdout, never wrapped or cut."""
    sys.stdout.write(as_json(data) + "\n")
    sys.stdout.flush()


JSON_HELP = "Print JSON instead of a table: machine-readable, every digest and path in full."
