"""Each ready-made check fails when what it guards is broken (and passes when it is not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from shipml.config import ProjectConfig
from shipml.errors import TestingError
from shipml.model import build_package, model_input
from shipml.testing import api_checks, behaviour_checks, data_checks, model_checks
from shipml.testing.check import Env, NotApplicable
from shipml.testing.subject import Subject

FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]


def _model() -> Pipeline:
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["island", "sex"]),
            ("num", SimpleImputer(), FEATURES[1:5]),
        ]
    )
    return Pipeline([("prep", prep), ("rf", RandomForestClassifier(30, random_state=0))])


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return load_penguins().drop(columns=["year"]).dropna(subset=["species"])


def make_subject(
    tmp: Path, frame: pd.DataFrame, *, train_idx=None, valid_idx=None, labels=None, **tests
) -> Subject:
    data = frame
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data))
    train_idx = order[:250] if train_idx is None else train_idx
    valid_idx = order[250:] if valid_idx is None else valid_idx
    train, valid = data.iloc[train_idx], data.iloc[valid_idx]
    y_train = train["species"] if labels is None else labels(train["species"])
    model = _model().fit(model_input(train[FEATURES]), y_train)
    pkg = build_package(
        model, valid[FEATURES], valid["species"], path=tmp / "pkg", train=train[FEATURES]
    )
    config = ProjectConfig.model_validate({"model": {"target": "species"}, "tests": tests})
    config.root = tmp
    subject = Subject(config, pkg)
    subject.__dict__["datasets"] = {"penguins": data.reset_index(drop=True)}
    return subject


ENV = Env(output=Path("."), server_url=lambda: "http://127.0.0.1:9")


def test_a_good_model_passes_the_core_checks(tmp_path, data):
    subject = make_subject(tmp_path, data, model={"min": {"accuracy": 0.9}, "slices": ["island"]})
    checks = [
        data_checks.schema,
        data_checks.leakage,
        data_checks.skew,
        model_checks.quality,
        model_checks.baseline_dummy,
        model_checks.slices,
        model_checks.missing_values,
        model_checks.parity,
    ]
    for check in checks:
        result = check(subject, ENV)
        assert result.passed, (check.__name__, result.message)


def test_leakage_finds_held_out_rows_that_were_trained_on(tmp_path, data):
    order = np.random.default_rng(1).permutation(len(data))
    train_idx = order[:250]
    valid_idx = np.concatenate([order[250:], order[:5]])  # 5 training rows held out too
    subject = make_subject(tmp_path, data, train_idx=train_idx, valid_idx=valid_idx)
    result = data_checks.leakage(subject, ENV)
    assert not result.passed
    assert result.metrics["leaked_rows"] == 5
    assert "5 of" in result.message


def test_schema_flags_an_unknown_category_and_names_the_column(tmp_path, data):
    subject = make_subject(tmp_path, data)
    bad = data.reset_index(drop=True).copy()
    bad.loc[3, "island"] = "Atlantis"
    subject.__dict__["datasets"] = {"penguins": bad}
    result = data_checks.schema(subject, ENV)
    assert not result.passed
    assert "island" in result.message and "Atlantis" in str(result.details)


def test_ranges_nulls_and_balance_fail_past_their_bounds(tmp_path, data):
    subject = make_subject(
        tmp_path,
        data,
        data={
            "ranges": {"body_mass_g": [3000, 6000]},
            "max_null_fraction": 0.01,
            "min_class_fraction": 0.3,
        },
    )
    ranges = data_checks.ranges(subject, ENV)
    assert not ranges.passed and "body_mass_g" in ranges.message
    nulls = data_checks.nulls(subject, ENV)
    assert not nulls.passed and "'sex'" in nulls.message
    balance = data_checks.label_balance(subject, ENV)
    assert not balance.passed and "Chinstrap" in balance.message


def test_quality_slices_and_baselines_fail_for_a_model_trained_on_shuffled_labels(tmp_path, data):
    def shuffle(y):
        return y.sample(frac=1.0, random_state=0).to_numpy()

    subject = make_subject(
        tmp_path,
        data,
        labels=shuffle,
        model={"min": {"accuracy": 0.9}, "slices": ["island"], "max_slice_gap": 0.01},
    )
    quality = model_checks.quality(subject, ENV)
    assert not quality.passed and "accuracy" in quality.message
    simpler = model_checks.baseline_simpler(subject, ENV)
    assert not simpler.passed, simpler.message  # logistic regression on true labels wins


def test_invariance_and_directional_fail_when_the_expectation_is_wrong(tmp_path, data):
    subject = make_subject(
        tmp_path,
        data,
        model={
            "invariance": [{"feature": "bill_length_mm", "shift": 12.0}],
            "directional": [
                {
                    "feature": "flipper_length_mm",
                    "shift": 30.0,
                    "label": "Gentoo",
                    "direction": "decrease",
                }
            ],
        },
    )
    # A 12 mm longer bill turns many Adelies into Chinstraps: not an irrelevant change.
    invariance = model_checks.invariance(subject, ENV)
    assert not invariance.passed and "bill_length_mm" in invariance.message
    directional = model_checks.directional(subject, ENV)
    assert not directional.passed


def test_calibration_error_is_measured_and_needs_probabilities(tmp_path, data):
    subject = make_subject(tmp_path, data)
    _, y = subject.holdout
    truth = y.to_numpy()
    classes = list(subject.signature.classes)
    n = len(truth)
    # Always 90% sure, right on every other row: accuracy 0.5 in the 0.8-0.9 bin, ECE 0.4.
    wrong = np.array([next(c for c in classes if c != t) for t in truth], dtype=object)
    labels = np.where(np.arange(n) % 2 == 0, truth, wrong)
    proba = np.full((n, len(classes)), 0.1 / (len(classes) - 1))
    proba[np.arange(n), [classes.index(v) for v in labels]] = 0.9
    subject.__dict__["holdout_predictions"] = (labels, proba)
    overconfident = model_checks.calibration(subject, ENV)
    half = (n + 1) // 2 / n  # rows 0, 2, 4, ... are right
    assert overconfident.metrics["calibration_error"] == pytest.approx(abs(0.9 - half))
    assert not overconfident.passed
    # Certain and always right: perfectly calibrated.
    proba = np.zeros((n, len(classes)))
    proba[np.arange(n), [classes.index(v) for v in truth]] = 1.0
    subject.__dict__["holdout_predictions"] = (truth.astype(object), proba)
    certain = model_checks.calibration(subject, ENV)
    assert certain.metrics["calibration_error"] == pytest.approx(0.0) and certain.passed
    subject.__dict__["holdout_predictions"] = (subject.holdout_predictions[0], None)
    with pytest.raises(NotApplicable):
        model_checks.calibration(subject, ENV)


def test_nan_is_no_evidence_a_check_passes_on(tmp_path, data, monkeypatch):
    """Non-finite predictions or metrics fail the checks that compare them (a NaN loses
    every comparison, so 'not worse' and 'not out of bounds' used to hold)."""
    directional = [{"feature": "flipper_length_mm", "shift": 20, "label": "Gentoo"}]
    subject = make_subject(tmp_path, data, model={"directional": directional})
    labels, proba = subject.holdout_predictions
    broken = proba.copy()
    broken[:3] = np.nan  # three rows with NaN probabilities
    subject.__dict__["holdout_predictions"] = (labels, broken)
    calibration = model_checks.calibration(subject, ENV)
    assert not calibration.passed and "3 of" in calibration.message
    assert not behaviour_checks.directional(subject, ENV).passed
    monkeypatch.setattr(model_checks, "holdout_metrics", lambda s: {"accuracy": float("nan")})
    simpler = model_checks.baseline_simpler(subject, ENV)
    assert not simpler.passed and "accuracy nan" in simpler.message


def test_a_range_on_a_text_or_empty_column_fails_rather_than_checking_nothing(tmp_path, data):
    frame = data.assign(empty=np.nan)
    subject = make_subject(tmp_path, frame, data={"ranges": {"island": [0, 1]}})
    result = data_checks.ranges(subject, ENV)
    assert not result.passed and "'island'" in result.message and "non-numeric" in result.message
    subject = make_subject(tmp_path, frame, data={"ranges": {"empty": [0, 1]}})
    result = data_checks.ranges(subject, ENV)
    assert not result.passed and "no values" in result.message


def test_checks_with_nothing_to_check_do_not_pass(tmp_path, data):
    """An empty golden file asks nothing; a dataset without the model's features has no
    nulls to count: neither is a pass."""
    (tmp_path / "golden.json").write_text("[]")
    subject = make_subject(tmp_path, data, api={"golden": "golden.json"})
    with pytest.raises(TestingError, match="holds no request"):
        api_checks.golden(subject, ENV)
    subject.__dict__["datasets"] = {"penguins": data[["species"]].reset_index(drop=True)}
    with pytest.raises(NotApplicable):
        data_checks.nulls(subject, ENV)


def test_a_slice_too_small_to_judge_is_named_not_dropped_silently(tmp_path, data):
    subject = make_subject(tmp_path, data, model={"slices": ["sex"], "min_slice_rows": 10})
    result = model_checks.slices(subject, ENV)
    assert "too few rows (< 10) to judge: sex=(missing) (" in result.message, result.message
    assert "sex=(missing)" not in {row["slice"] for row in result.details}


def test_a_slice_whose_gap_is_nan_is_the_worst_not_passed_over():
    # a regressor's MAE over a slice holding a NaN prediction is NaN: max() passed over it
    rows = [
        {"slice": "a", "gap": 0.1},
        {"slice": "b", "gap": float("nan")},
        {"slice": "c", "gap": 0.0},
    ]
    assert model_checks.worst_slice(rows)["slice"] == "b"
    assert model_checks.worst_slice(rows[::-1])["slice"] == "b"
