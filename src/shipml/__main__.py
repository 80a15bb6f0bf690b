"""``python -m shipml`` runs the CLI."""

from shipml.cli import run

run()
