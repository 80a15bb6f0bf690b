"""`--help` teaches: every command has a summary, lists show it unbroken, every page renders."""

from pathlib import Path
from typing import Any

import typer

from shipml.cli import app
from tests.conftest import shipml_here


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append(((*path, name), command))
        if hasattr(command, "commands"):  # a group (Typer vendors its own click)
            found += _commands(command, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def test_every_command_has_a_one_line_summary():
    assert len(COMMANDS) > 40  # the walk sees the whole tree, groups and their commands
    for path, command in COMMANDS:
        summary = command.short_help or command.help or ""
        assert summary.strip(), f"shipml {' '.join(path)} has no help"
        assert "\n" not in summary, f"shipml {' '.join(path)}: its summary keeps a line break"


def test_a_command_list_shows_each_summary_unbroken(tmp_path: Path):
    # A wide terminal wraps nothing, so a line break left in a summary shows as one here.
    shown = shipml_here("--help", cwd=tmp_path, env={"COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr
    assert (
        "Without --data it is the penguins example; with --data FILE --target COLUMN it is made"
        in shown.stdout
    )
    listed = shipml_here("data", "--help", cwd=tmp_path, env={"COLUMNS": "400"})
    assert "Limits on size and rows, and whether http(s) is allowed" in listed.stdout
    assert "(unchanged content keeps the version). Limits" in listed.stdout


def test_every_help_page_renders(tmp_path: Path):
    for path, _ in COMMANDS:
        shown = shipml_here(*path, "--help", cwd=tmp_path)
        assert shown.returncode == 0, (path, shown.stderr)
        assert "Usage: shipml " + " ".join(path) in " ".join(shown.stdout.split()), path


def test_every_port_option_refuses_what_is_not_a_port(tmp_path: Path):
    ports = [
        (path, param)
        for path, command in COMMANDS
        for param in command.params
        if param.name == "port" or param.name.endswith("_port")
    ]
    assert len(ports) >= 6  # serve, gateway, ui, server, notebook, dashboard, deploy apply
    for path, param in ports:
        assert param.max == 65535, (path, param.name)
        assert param.min in (0, 1), (path, param.name)
    refused = shipml_here("ui", "--port", "-1", cwd=tmp_path)
    assert refused.returncode == 2 and "--port" in refused.stderr


def test_no_help_text_loses_a_bracketed_word_to_rich_markup():
    # In rich mode `[tune.space]` or `[model]` is read as a style tag and vanishes from the
    # page ("shipml.toml gets their ."); a section name in help is written `\[model]`.
    from rich.text import Text

    for path, command in COMMANDS:
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            shown = Text.from_markup(text).plain
            assert shown == text.replace("\\[", "["), (path, text)
