"""The answers remembered by number (ids the gateway made): a label is taken once, only
for a number answered and still in the ring; a slow answer never pushes out a newer one."""

from __future__ import annotations

import pytest

from shipml.rollout.answered import Answered


def test_a_label_is_taken_once_for_an_answered_number():
    ring = Answered("abc", capacity=8)
    ring.add(3, now=10.0)
    assert ring.holds("abc-3") and not ring.holds("abc-4")
    assert ring.label("abc-3") == ("pending", 10.0)
    assert ring.label("abc-3") == ("labelled", 10.0)
    assert ring.holds("abc-3")  # labelled answers are still this gateway's
    assert ring.label("abc-4") is None  # never answered


@pytest.mark.parametrize(
    "given",
    ["xyz-3", "abc3", "abc-", "abc-0", "abc--3", "abc-3.0", "abc-+3", "abc-٣", "abc-" + "9" * 19],
)
def test_ids_that_are_not_a_number_of_this_gateway_name_nothing(given):
    ring = Answered("abc", capacity=8)
    ring.add(3, now=1.0)
    assert ring.number_of(given) is None
    assert ring.label(given) is None and not ring.holds(given)


def test_a_number_that_left_the_ring_is_unknown_and_a_slow_answer_keeps_out():
    ring = Answered("abc", capacity=4)
    for n in range(1, 10):
        ring.add(n, now=float(n))
    assert ring.label("abc-5") is None  # 9 took its slot (5 % 4 == 9 % 4)
    assert [ring.label(f"abc-{n}") for n in (6, 7, 8, 9)] == [
        ("pending", 6.0),
        ("pending", 7.0),
        ("pending", 8.0),
        ("pending", 9.0),
    ]
    ring.add(5, now=99.0)  # a slow answer after newer ones: its slot holds 9, labelled
    assert ring.label("abc-9") == ("labelled", 9.0) and ring.label("abc-5") is None
