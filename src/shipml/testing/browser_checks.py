"""Browser checks: the model server's demo page driven in a real headless Chromium."""

from __future__ import annotations

from shipml.testing.check import Check

CHECKS: list[Check] = []
