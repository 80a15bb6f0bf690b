"""Testing ML for real: data, model, api and browser checks run through pytest, with
JUnit/HTML/JSON results, promotion gates and the ML Test Score (see docs/testing.md)."""
