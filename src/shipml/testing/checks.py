"""Every ready-made check, in the order they run (data, model, api, browser)."""

from __future__ import annotations

from shipml.testing.check import Check


def all_checks() -> list[Check]:
    from shipml.testing import (
        api_checks,
        browser_checks,
        data_checks,
        model_checks,
        rollout_checks,
    )

    return [
        *data_checks.CHECKS,
        *model_checks.CHECKS,
        *rollout_checks.CHECKS,
        *api_checks.CHECKS,
        *browser_checks.CHECKS,
    ]
