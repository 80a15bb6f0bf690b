"""Settings of ``shipml tune``: the search space and the search."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from shipml.config.section import Section


class TuneParam(Section):
    """One dimension of the search space of `shipml tune`: an int or float range (``log``
    for a logarithmic scale, ``step`` for a grid), or a list of ``choices``."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    choices: list[str | int | float | bool] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> TuneParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty list of choices")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("a categorical parameter takes choices, not low/high/log")
            for i, a in enumerate(self.choices):
                for b in self.choices[:i]:
                    if a == b:  # Optuna records the first of equal choices: 1 for true
                        raise ValueError(
                            f"the choices {b!r} and {a!r} are equal to Python and Optuna; "
                            "give each value once, all of the parameter's type"
                        )
            return self
        if self.choices is not None:
            raise ValueError(f"an {self.type} parameter takes low and high, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} parameter needs low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError("low and high must be finite numbers with low < high")
        if self.log and self.low <= 0:
            raise ValueError("a log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("give either log = true or a step, not both")
        if self.type == "int" and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError("an int parameter needs whole numbers for low and high")
        if self.step is not None:
            if self.type == "int" and not float(self.step).is_integer():
                raise ValueError(f"an int parameter needs a whole step, got {self.step:g}")
            if self.step > self.high - self.low:
                raise ValueError(
                    f"the step {self.step:g} is wider than the range {self.low:g}..{self.high:g}"
                )
        return self


class TuneSection(Section):
    """`shipml tune`: the search over the pipeline's parameters (docs/experiments.md)."""

    metric: str = ""  # the objective: a metric the pipeline logs
    direction: Literal["maximize", "minimize"] = "maximize"
    budget: str = "10m"  # wall-clock budget of the search: 90s, 10m, 1h30m
    trials: int = Field(default=0, ge=0)  # at most this many trials; 0: as many as fit
    space: dict[str, TuneParam] = Field(default_factory=dict)
    # Pipeline parameters that are not hyperparameters (a seed, the split): not searched,
    # and not counted as untuned by `shipml score`.
    fixed: list[str] = Field(default_factory=list)
    study: str = ""  # empty: the project name
    # Optuna's storage; empty: next to the MLflow store (PostgreSQL: the same database,
    # schema "optuna"; SQLite: optuna.db beside the MLflow file).
    storage: str = ""
    seed: int = 0  # the TPE sampler's seed
    # Kubernetes: `shipml deploy render` also emits a Job of this many `shipml tune
    # --worker` pods and a lead Job that wraps up, sharing the study in PostgreSQL (team
    # mode's database, or a PostgreSQL [tune] storage / [tracking] uri); 0: no tuning Jobs.
    workers: int = Field(default=0, ge=0, le=64)
    pruner: Literal["median", "none"] = "median"
    # The registered best trial is never worse than the defaults on this hold-out metric
    # (empty: no guard). Its direction is the objective's.
    holdout_metric: str = ""
    # The winning trial is trained again from scratch; its metrics must match within this.
    reproducibility_tolerance: float = Field(default=1e-6, ge=0.0)
