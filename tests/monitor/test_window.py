"""Periods and windows as a user types them: a clear error for each mistake."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shipml.errors import ConfigError
from shipml.monitor import WindowSpec, parse_period


def test_a_period_is_read_in_its_unit():
    assert parse_period("90m") == timedelta(minutes=90)
    assert parse_period(" 2w ") == timedelta(weeks=2)
    assert WindowSpec.parse("5000") == WindowSpec(rows=5000)
    assert WindowSpec.parse("10m") == WindowSpec(seconds=600.0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0h", "expects a duration"),
        ("1 hour", "expects a duration"),
        ("-5m", "expects a duration"),
        # timedelta and the date the period starts at overflowed: OverflowError tracebacks
        ("99999999999999w", "longer than 100 years"),
        ("3000000d", "longer than 100 years"),
    ],
)
def test_a_wrong_period_is_a_config_error(text: str, says: str):
    with pytest.raises(ConfigError, match=says) as caught:
        parse_period(text)
    assert caught.value.hint
    with pytest.raises(ConfigError, match=says):
        WindowSpec.parse(text)
