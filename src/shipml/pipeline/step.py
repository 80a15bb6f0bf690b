"""``@step`` and ``@pipeline``: plain Python functions wired into a DAG.

Inside a ``@pipeline`` function, calling a step does not run it: it records a node
and returns a reference to its future output(s). Passing that reference to another
step draws an edge. Outside a pipeline a step is just its function, so steps stay
callable from notebooks and unit tests.

    @step
    def ingest(raw=dataset("penguins")) -> pd.DataFrame: ...

    @step(outputs=("train", "valid"))
    def split(df, test_size: float = 0.25): ...

    @pipeline
    def training(test_size: float = 0.25):
        train, valid = split(ingest(), test_size=test_size)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, overload

from shipml.errors import PipelineError


@dataclass(frozen=True)
class DatasetRef:
    """A dataset input of a step, resolved to a snapshot when the pipeline runs."""

    name: str


def dataset(name: str) -> Any:
    """Declare a dataset input, e.g. ``def ingest(raw=dataset("penguins"))``.

    At run time the argument is a ``DatasetInput`` (``.to_pandas()``, ``.digest``)."""
    return DatasetRef(name)


@dataclass(frozen=True)
class OutputRef:
    """The future output ``name`` of node ``node``."""

    node: str
    name: str


@dataclass
class Node:
    name: str
    step: Step
    arguments: dict[str, Any]
    upstream: list[str] = field(default_factory=list)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.step.outputs or ("output",)


@dataclass
class Graph:
    pipeline: str
    params: dict[str, Any]
    nodes: list[Node] = field(default_factory=list)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def edges(self) -> list[tuple[str, str]]:
        return [(up, n.name) for n in self.nodes for up in n.upstream]

    def add(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            bound = step.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineError(
                f"step '{step.name}' called with the wrong arguments: {exc}",
                hint=f"its signature is {step.name}{step.signature}",
            ) from exc
        bound.apply_defaults()
        name = step.name
        taken = {n.name for n in self.nodes}
        i = 2
        while name in taken:
            name, i = f"{step.name}_{i}", i + 1
        upstream: list[str] = []
        for arg, value in bound.arguments.items():
            for ref in output_refs(value):
                if ref.node not in upstream:
                    upstream.append(ref.node)
            if isinstance(value, Step):
                raise PipelineError(
                    f"step '{name}' got the step '{value.name}' itself as '{arg}'",
                    hint=f"call it to use its output: {value.name}(...)",
                )
        self.nodes.append(Node(name, step, dict(bound.arguments), upstream))
        outs = step.outputs
        if outs is None:
            return OutputRef(name, "output")
        return tuple(OutputRef(name, o) for o in outs)


def output_refs(value: Any) -> list[OutputRef]:
    if isinstance(value, OutputRef):
        return [value]
    if isinstance(value, list | tuple):
        return [r for v in value for r in output_refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in output_refs(v)]
    return []


_building: ContextVar[Graph | None] = ContextVar("shipml_building_graph", default=None)


class Step:
    """A pipeline step wrapping a plain function."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        outputs: tuple[str, ...] | None = None,
        cache: bool = True,
        description: str | None = None,
    ) -> None:
        self.func = func
        self.name = _checked_name(name if name is not None else func.__name__)
        self.outputs = _checked_outputs(self.name, outputs)
        self.cache = cache
        self.description = description or (inspect.getdoc(func) or "").split("\n")[0]
        self.signature = inspect.signature(func)
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        graph = _building.get()
        if graph is None:
            return self.func(*args, **kwargs)
        return graph.add(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<shipml step {self.name}>"


@overload
def step(func: Callable[..., Any], /) -> Step: ...
@overload
def step(
    *,
    name: str | None = None,
    outputs: tuple[str, ...] | list[str] | None = None,
    cache: bool = True,
) -> Callable[[Callable[..., Any]], Step]: ...
def step(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    outputs: tuple[str, ...] | list[str] | None = None,
    cache: bool = True,
) -> Any:
    """Make a function a pipeline step. ``outputs`` names several return values (a tuple);
    ``cache=False`` runs it every time."""

    def wrap(f: Callable[..., Any]) -> Step:
        return Step(f, name=name, outputs=outputs, cache=cache)  # type: ignore[arg-type]

    return wrap(func) if func is not None else wrap


def _checked_name(name: Any, what: str = "step") -> str:
    """A step's name names its node, its artifacts (``steps/NAME/``), its CLI argument
    (``shipml step run NAME``) and its Kubeflow task; a pipeline's, its runs and its
    Kubeflow pipeline: a Python identifier."""
    if not isinstance(name, str) or not name.isidentifier():
        raise PipelineError(
            f"a {what} cannot be named {name!r}",
            hint="name it like a Python function: letters, digits and _, not starting "
            f"with a digit (e.g. @{what}(name='train_model'))",
        )
    return name


def _checked_outputs(step: str, outputs: Any) -> tuple[str, ...] | None:
    """``outputs`` names the values a step returns: distinct identifiers, in a tuple or list
    (``outputs="model"`` would be five outputs m, o, d, e, l; a name given twice would
    lose a value)."""
    if outputs is None:
        return None
    names = tuple(outputs) if isinstance(outputs, tuple | list) else None
    bad = (
        names is None
        or not names
        or any(not isinstance(n, str) or not n.isidentifier() for n in names)
        or len(set(names)) != len(names)
    )
    if bad or names is None:
        raise PipelineError(
            f"step '{step}' declares outputs={outputs!r}",
            hint="give a tuple of distinct names, one per value it returns, each like a "
            "Python name: outputs=('train', 'valid') (one output: leave outputs out)",
        )
    return names


class Pipeline:
    """A pipeline: a function whose body calls steps. Its parameters are the run's params."""

    def __init__(self, func: Callable[..., Any], *, name: str | None = None) -> None:
        self.func = func
        self.name = _checked_name(name if name is not None else func.__name__, "pipeline")
        self.signature = inspect.signature(func)
        _named_params_only(self.name, self.signature)
        functools.update_wrapper(self, func)

    @property
    def defaults(self) -> dict[str, Any]:
        return {
            k: p.default
            for k, p in self.signature.parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    def resolve_params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        known = set(self.signature.parameters)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise PipelineError(
                f"pipeline '{self.name}' has no parameter {', '.join(map(repr, unknown))}",
                hint=f"its parameters: {', '.join(sorted(known)) or 'none'}",
            )
        for key, value in overrides.items():
            _check_type(self.name, self.signature.parameters[key], value)
        params = {**self.defaults, **overrides}
        missing = sorted(known - set(params))
        if missing:
            raise PipelineError(
                f"pipeline '{self.name}' needs a value for {', '.join(missing)}",
                hint="set it under [pipeline.params] in shipml.toml or pass --param NAME=VALUE",
            )
        return params

    def check_value(self, name: str, value: Any) -> None:
        """Refuse ``value`` for parameter ``name`` if it is not of the parameter's type (as
        ``--param`` values are): a ``PipelineError``."""
        _check_type(self.name, self.signature.parameters[name], value)

    def build(self, params: dict[str, Any] | None = None) -> Graph:
        """The DAG for these parameters (defaults filled in)."""
        resolved = self.resolve_params(params or {})
        graph = Graph(self.name, resolved)
        token = _building.set(graph)
        try:
            self.func(**resolved)
        finally:
            _building.reset(token)
        if not graph.nodes:
            raise PipelineError(
                f"pipeline '{self.name}' calls no step",
                hint="decorate the functions it calls with @shipml.step",
            )
        return graph

    def __call__(self, **params: Any) -> Graph:
        return self.build(params)

    def __repr__(self) -> str:
        return f"<shipml pipeline {self.name}>"


def _named_params_only(name: str, signature: inspect.Signature) -> None:
    """A pipeline's parameters are the run's params, set by name (``--param a=1``): a
    positional-only one failed with a TypeError, ``*args``/``**kwargs`` swallowed them."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    odd = [p for p in signature.parameters.values() if p.kind not in named]
    if odd:
        shown = ", ".join(
            f"{'*' * (p.kind == p.VAR_POSITIONAL)}{'**' * (p.kind == p.VAR_KEYWORD)}"
            f"{p.name}{' (positional-only)' * (p.kind == p.POSITIONAL_ONLY)}"
            for p in odd
        )
        raise PipelineError(
            f"pipeline '{name}' has the parameter(s) {shown}",
            hint="a pipeline's parameters are the run's params, each set by name "
            "(--param NAME=VALUE): give it named parameters only, e.g. def "
            f"{name}(n_estimators: int = 200)",
        )


_SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool}


def _check_type(pipeline_name: str, param: inspect.Parameter, value: Any) -> None:
    """A value given for a parameter annotated (or, unannotated, defaulted) as int, float
    or bool must be one: ``--param n_estimators=abc`` is refused here, not deep inside a
    step. A float parameter takes an int; an int takes no bool. (A str parameter takes
    what it is given: ``--param tag=2024`` reads as a number.)"""
    note = param.annotation
    found = _SCALARS.get(note) if isinstance(note, str) else note
    if note is inspect.Parameter.empty and param.default is not param.empty:
        found = type(param.default)
    if not isinstance(found, type) or found not in _SCALARS.values():
        return
    kind = found
    fits = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        fits = True
    if not fits:
        example = param.default if param.default is not param.empty else _EXAMPLES[kind]
        raise PipelineError(
            f"pipeline '{pipeline_name}' parameter {param.name!r} is {kind.__name__}, "
            f"got {_shown(value)} ({type(value).__name__})",
            hint=f"for example --param {param.name}={_json(example)}, or the same in "
            "[pipeline.params] of shipml.toml",
        )


_EXAMPLES: dict[type, Any] = {int: 1, float: 0.5, bool: True}


def _shown(value: Any) -> str:
    """A value's repr for a message, cut short (a --param can be megabytes)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def pipeline(func: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Make a function a pipeline."""

    def wrap(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name)

    return wrap(func) if func is not None else wrap
