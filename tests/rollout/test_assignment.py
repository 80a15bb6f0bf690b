import random

from shipml.rollout import choose
from shipml.rollout.analysis import two_proportion_p, wilson


def test_sticky_keys_keep_their_variant_and_canary_steps_only_move_keys_forward():
    keys = [f"user-{i}" for i in range(5000)]
    rng = random.Random(0)
    at = {w: {k: choose([("a", 100 - w), ("b", w)], k, rng) for k in keys} for w in (5, 25, 50)}
    for w in (5, 25, 50):
        again = {k: choose([("a", 100 - w), ("b", w)], k, rng) for k in keys}
        assert again == at[w]
    moved_back = [k for k in keys if at[5][k] == "b" and at[25][k] == "a"]
    assert moved_back == []


def test_statistics():
    low, high = wilson(90, 100)
    assert 0.82 < low < 0.9 < high < 0.95
    assert two_proportion_p(95, 100, 40, 100) < 1e-6
    assert two_proportion_p(50, 100, 50, 100) == 1.0


def test_policies_that_cannot_work_are_refused():
    import pytest

    from shipml.errors import ConfigError
    from shipml.rollout import TrafficPolicy, Variant

    a, b = Variant("a", url="http://x"), Variant("b", url="http://y")
    for kwargs, message in [
        ({"mode": "canary", "steps": []}, "increasing percentages"),
        ({"mode": "canary", "steps": [150.0]}, "increasing percentages"),
        ({"mode": "ab", "weights": {"a": 80, "B": 20}}, "unknown variants"),
        ({"mode": "ab", "min_samples": 0}, "min_samples"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrafficPolicy(champion=a, challengers=[b], **kwargs)
    with pytest.raises(ConfigError, match="must differ"):
        TrafficPolicy("ab", a, [Variant("a", url="http://z")])
