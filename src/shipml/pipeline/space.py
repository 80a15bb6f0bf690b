"""The search space of `shipml tune` (``[tune.space]``): checked against the pipeline's
parameters before a study is opened, and drawn from by Optuna's trials."""

from __future__ import annotations

from typing import Any

from shipml.config import ProjectConfig, TuneParam
from shipml.errors import PipelineError, TuneError
from shipml.pipeline.step import Pipeline


def suggest(trial: Any, name: str, spec: TuneParam) -> Any:
    if spec.type == "categorical":
        return trial.suggest_categorical(name, list(spec.choices or []))
    low, high = float(spec.low or 0), float(spec.high or 0)
    if spec.type == "int":
        step = int(spec.step) if spec.step else 1
        return trial.suggest_int(name, int(low), int(high), step=step, log=spec.log)
    return trial.suggest_float(name, low, high, step=spec.step, log=spec.log)


def check_space(
    config: ProjectConfig, defaults: dict[str, Any], pipe: Pipeline | None = None
) -> None:
    """The space names pipeline parameters, each default lies in its range and (given the
    pipeline) what the space can give a parameter is of its type."""
    tune = config.tune
    if not tune.space:
        raise TuneError(
            "[tune.space] is empty: there is nothing to search",
            hint='declare parameters, e.g. n_estimators = { type = "int", low = 50, high = 400 }',
        )
    if not tune.metric:
        raise TuneError(
            "[tune] metric is not set: the search needs an objective",
            hint='name a metric the pipeline logs, e.g. metric = "cv_accuracy"',
        )
    for name in tune.fixed:  # a typo ("sed") silently left `seed` counted as untuned
        if name not in defaults or name in tune.space:
            raise TuneError(
                f"[tune] fixed names {name!r}, which is "
                + ("searched too ([tune.space])" if name in tune.space else "not a parameter"),
                hint="list the pipeline parameters that are not searched: "
                f"{', '.join(sorted(set(defaults) - set(tune.space))) or 'none'}",
            )
    for name, spec in tune.space.items():
        if name not in defaults:
            raise TuneError(
                f"[tune.space] names {name!r}, which is not a pipeline parameter",
                hint=f"the pipeline's parameters: {', '.join(sorted(defaults))}",
            )
        value = defaults[name]
        if spec.type == "categorical":
            ok = value in (spec.choices or [])
        else:
            ok = isinstance(value, int | float) and float(spec.low or 0) <= value <= float(
                spec.high or 0
            )
        if not ok:
            raise TuneError(
                f"the default of {name!r} ({value!r}) lies outside its [tune.space] entry",
                hint="the search starts from the defaults: widen the range or add the choice",
            )
        if pipe is not None:
            _check_kind(pipe, name, spec)


def _check_kind(pipe: Pipeline, name: str, spec: TuneParam) -> None:
    """What the space gives ``name`` fits its type: a float range for an int parameter, or
    the choice 1 for a bool, stopped the search at the first trial that drew one."""
    if spec.type == "categorical":
        values: list[Any] = list(spec.choices or [])
    else:
        kind = int if spec.type == "int" else float
        values = [kind(spec.low or 0), kind(spec.high or 0)]
    for value in values:
        try:
            pipe.check_value(name, value)
        except PipelineError as exc:
            raise TuneError(
                f'[tune.space] {name} = {{ type = "{spec.type}", ... }} can give {value!r} '
                f"({type(value).__name__}), but {exc.message.split(' parameter ', 1)[-1]}",
                hint=f"make the [tune.space] entry of {name} give values of the parameter's "
                'type (an int parameter: type = "int"; a bool: choices = [true, false])',
            ) from exc
