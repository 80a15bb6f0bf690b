"""How a pipeline run shows itself: one line per step (running / cached / done / failed)."""

from __future__ import annotations

from typing import Any, Protocol

from rich.console import Console

ICONS = {
    "done": "[green]✓[/]",
    "cached": "[cyan]↺[/]",
    "failed": "[red]✗[/]",
    "skipped": "[dim]–[/]",
}


class Reporter(Protocol):
    def pipeline_started(self, name: str, run_id: str, steps: list[str]) -> None: ...
    def step_started(self, name: str) -> None: ...
    def step_finished(self, name: str, status: str, seconds: float, note: str = "") -> None: ...


class SilentReporter:
    def pipeline_started(self, name: str, run_id: str, steps: list[str]) -> None:
        pass

    def step_started(self, name: str) -> None:
        pass

    def step_finished(self, name: str, status: str, seconds: float, note: str = "") -> None:
        pass


class ConsoleReporter:
    """Rich output: a spinner while a step runs, then its outcome and duration."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._status: Any = None
        self._width = 12

    def pipeline_started(self, name: str, run_id: str, steps: list[str]) -> None:
        self._width = max([len(s) for s in steps] + [12])
        self.console.print(
            f"[bold]pipeline[/] {name} · {len(steps)} steps · MLflow run [dim]{run_id}[/]"
        )

    def step_started(self, name: str) -> None:
        self._status = self.console.status(f"running [bold]{name}[/]…")
        self._status.start()

    def step_finished(self, name: str, status: str, seconds: float, note: str = "") -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        took = f"{seconds:6.2f}s" if status in ("done", "failed") else " " * 7
        extra = f"  [dim]{note}[/]" if note else ""
        self.console.print(f"  {ICONS[status]} {name:<{self._width}} {status:<8}{took}{extra}")
