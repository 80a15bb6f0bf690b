"""Settings of ``shipml test``, ``shipml promote``'s gates and ``shipml score``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from shipml.config.section import Section

SUITES = ("unit", "data", "model", "api", "browser")  # the suites of `shipml test`


class DataTestsSection(Section):
    """Ready-made data checks (`shipml test --suite data`); see docs/testing.md."""

    schema_check: bool = True  # the data matches the model's signature (pandera)
    ranges: dict[str, list[float]] = Field(default_factory=dict)  # column = [min, max]
    max_null_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    max_duplicate_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    min_class_fraction: float = Field(default=0.05, ge=0.0, le=1.0)  # label balance
    leakage: bool = True  # no held-out row is also a training row
    skew: bool = True  # training features and the serving path agree
    forbidden_features: list[str] = Field(default_factory=list)  # e.g. names, e-mails


class InvarianceSpec(Section):
    """A change that should not move predictions: ``shift`` a numeric feature, set a
    ``value``, or ``shuffle`` the column (exactly one)."""

    feature: str
    shift: float | None = None
    value: str | float | None = None
    shuffle: bool = False
    min_agreement: float = Field(default=1.0, ge=0.0, le=1.0)
    rtol: float = Field(default=1e-3, ge=0.0)  # regressors: "unchanged" within this

    @model_validator(mode="after")
    def _one_change(self) -> InvarianceSpec:
        given = [self.shift is not None, self.value is not None, self.shuffle]
        if sum(given) != 1:
            raise ValueError("give exactly one of shift, value or shuffle = true")
        return self


class DirectionalSpec(Section):
    """Changing ``feature`` by ``shift`` moves the prediction: the probability of
    ``label`` for a classifier, the value for a regressor."""

    feature: str
    shift: float
    direction: Literal["increase", "decrease"] = "increase"
    label: str | None = None  # required for classifiers
    min_fraction: float = Field(default=0.9, ge=0.0, le=1.0)


class ModelTestsSection(Section):
    """Ready-made model checks (`shipml test --suite model`); see docs/testing.md."""

    min: dict[str, float] = Field(default_factory=dict)  # accuracy, f1_macro, roc_auc_ovr
    max: dict[str, float] = Field(default_factory=dict)  # rmse, mae
    baseline_margin: float = 0.0  # must beat the dummy baseline by this much
    simpler_tolerance: float = 0.0  # may trail a simpler model by at most this much
    slices: list[str] = Field(default_factory=list)  # categorical or numeric (binned)
    sensitive: list[str] = Field(default_factory=list)  # slices checked for inclusion
    slice_bins: int = Field(default=4, ge=2)
    min_slice_rows: int = Field(default=10, ge=1)
    max_slice_gap: float = Field(default=0.15, ge=0.0)
    max_calibration_error: float = Field(default=0.1, ge=0.0)
    invariance: list[InvarianceSpec] = Field(default_factory=list)
    directional: list[DirectionalSpec] = Field(default_factory=list)
    simpler: bool = True  # compare with a simpler model (needs the training rows)
    missing_values: bool = True
    min_feature_importance: float | None = None  # None: importance not checked
    latency_budget_ms: float = Field(default=10.0, gt=0.0)  # p95 of a one-row prediction
    max_age_days: float = Field(default=180.0, gt=0.0)
    canary: bool = True  # rehearse a canary, online analysis and rollback in the gateway


class ApiTestsSection(Section):
    """Checks against a running server (`shipml test --suite api [--against URL]`)."""

    requests: int = Field(default=400, ge=1)  # the short load test
    concurrency: int = Field(default=8, ge=1)
    max_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    max_p95_ms: float = Field(default=100.0, gt=0.0)
    golden: str = ""  # JSON file of golden requests; empty: the package's holdout rows
    golden_rows: int = Field(default=50, ge=1)


class TestsSection(Section):
    """`shipml test`: which model, which suites, where the results go."""

    ref: str = ""  # the model tested by default (REF); empty: the newest registered version
    suites: list[str] = Field(default_factory=lambda: ["unit", "data", "model", "api", "browser"])
    paths: list[str] = Field(default_factory=lambda: ["tests"])  # the project's own tests
    output: str = "results"
    data: DataTestsSection = Field(default_factory=DataTestsSection)
    model: ModelTestsSection = Field(default_factory=ModelTestsSection)
    api: ApiTestsSection = Field(default_factory=ApiTestsSection)


class GatesSection(Section):
    """What `shipml promote` demands of a version before it becomes champion."""

    suites: list[str] = Field(default_factory=lambda: ["data", "model"])  # all passed
    # Aliases that only `shipml promote` (gates, or --force --reason) may move; `shipml run
    # --alias` and `shipml models alias` go through the same gates for them.
    protect: list[str] = Field(default_factory=lambda: ["champion"])
    # metric = bound; a bound is a number or "champion", "champion - 0.005", ...
    min: dict[str, float | str] = Field(default_factory=dict)
    max: dict[str, float | str] = Field(default_factory=dict)

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SUITES]
        if unknown:  # a typo would be a gate no version can ever pass, found at promote
            raise ValueError(f"unknown suite {unknown[0]!r}; the suites: {', '.join(SUITES)}")
        return value

    @field_validator("min", "max")
    @classmethod
    def _suite_metrics(cls, value: dict[str, float | str]) -> dict[str, float | str]:
        for metric, bound in value.items():
            suite, _, name = metric.partition(".")
            if suite not in SUITES or not name:
                raise ValueError(
                    f"gate metric {metric!r} is not SUITE.NAME (e.g. 'model.accuracy'; "
                    f"suites: {', '.join(SUITES)})"
                )
            if isinstance(bound, float) and bound != bound:
                raise ValueError(f"the bound of {metric!r} is NaN, which nothing meets")
        return value


class ScoreSection(Section):
    """`shipml score`: ML Test Score tests run by hand, with the document of their results
    (test id = path), e.g. "data-5" = "docs/privacy-review.md"."""

    manual: dict[str, str] = Field(default_factory=dict)
