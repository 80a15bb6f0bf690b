"""Testing ML for real: checks, suites, reports and gates."""
