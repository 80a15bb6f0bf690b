"""The latency check judges the best round against a baseline measured in the same run."""

from shipml.testing.serving_checks import _latency_result


def test_one_busy_round_does_not_fail_a_fast_model():
    quiet = [0.1] * 60
    busy = [0.1] * 50 + [9.0] * 10  # a preempted round: its p95 is 9 ms
    result = _latency_result([busy, quiet, busy], [[0.05] * 60] * 3, budget=5.0)
    assert result.passed
    assert result.metrics["latency_p95_ms"] == 0.1
    assert result.metrics["latency_baseline_p95_ms"] == 0.05
    assert "ENVIRONMENT" not in result.message


def test_a_slow_model_fails_and_a_slow_machine_is_named():
    slow_model = _latency_result([[8.0] * 60] * 3, [[0.1] * 60] * 3, budget=5.0)
    assert not slow_model.passed and "ENVIRONMENT" not in slow_model.message
    slow_machine = _latency_result([[8.0] * 60] * 3, [[6.0] * 60] * 3, budget=5.0)
    assert not slow_machine.passed
    assert "machine is too slow or too busy" in slow_machine.message
