"""One step's execution, shared by the local runner (``runner``) and a Kubeflow task
(``exchange``): the settings its cache key depends on, its JSON arguments checked, its
datasets resolved and described the same way in both lineages, and its function called
in its context with its outputs split and stored in the cache."""

from __future__ import annotations

import inspect
import json
from typing import Any

from shipml.config import ProjectConfig
from shipml.data import DatasetStore, Snapshot, parse_ref
from shipml.errors import DataError, PipelineError
from shipml.pipeline.cache import ArtifactCache, StoredOutput
from shipml.pipeline.context import RunContext, activate, deactivate
from shipml.pipeline.step import Node, output_refs


def step_settings(config: ProjectConfig) -> dict[str, Any]:
    """Settings a step's result depends on (package_model reads the parity tolerance):
    part of every cache key."""
    return {"parity_tolerance": config.model.parity_tolerance}


def check_json(step: str, arg: str, value: Any) -> None:
    """A plain argument of a step must be a JSON value (it is part of the cache key); a
    step output inside a list, a dict or ``*args`` is not one."""
    inside = sorted({r.node for r in output_refs(value)})
    if inside:
        raise PipelineError(
            f"step '{step}' got the output(s) of {', '.join(inside)} inside a "
            f"{type(value).__name__} for '{arg}': a step output is passed as an argument of "
            "its own, not inside a list, a dict or *args",
            hint=f"give '{step}' one parameter per output, e.g. {step}(a, b) for def {step}(a, b)",
        )
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise PipelineError(
            f"step '{step}' got {type(value).__name__} for '{arg}', which is neither a step "
            "output, a dataset nor a JSON value",
            hint="pass step outputs, dataset(...) or plain values (numbers, strings, lists)",
        ) from exc


def resolve_dataset(config: ProjectConfig, store: DatasetStore, name: str) -> Snapshot:
    """The snapshot a run uses: ``name@version`` pins a version; a configured source is
    snapshotted if it changed; otherwise the latest version added with `shipml data add`."""
    base, version = parse_ref(name)
    if version is not None:
        return store.get(name)
    if base in config.datasets:
        section = config.datasets[base]
        return store.add(base, section.source, description=section.description)
    if base in store.names():
        return store.get(base)
    raise DataError(
        f"the pipeline uses dataset {name!r}, which is neither in shipml.toml [datasets] "
        "nor added to the store",
        hint=f"add it: `shipml data add {name} PATH_OR_URI`, or a [datasets.{name}] section",
    )


def dataset_lineage(snap: Snapshot) -> dict[str, Any]:
    """What a lineage record says of a dataset a run read."""
    return {
        "version": snap.version,
        "sha256": snap.digest,
        "source": snap.source,
        "rows": snap.rows,
    }


def split_outputs(node: Node, value: Any) -> dict[str, Any]:
    """A step's return value by output name (one ``output`` unless it declares several)."""
    names = node.step.outputs
    if names is None:
        return {"output": value}
    if not isinstance(value, tuple | list) or len(value) != len(names):
        got = len(value) if isinstance(value, tuple | list) else 1
        raise PipelineError(
            f"step '{node.name}' declares outputs ({', '.join(names)}) but returned {got} value(s)",
            hint=f"return a tuple of {len(names)} values, in that order",
        )
    return dict(zip(names, value, strict=True))


def execute(
    node: Node, call: dict[str, Any], ctx: RunContext, cache: ArtifactCache
) -> tuple[dict[str, Any], list[StoredOutput]]:
    """Call the step's function with ``call`` inside ``ctx`` and store its outputs by digest;
    returns the values and what was stored. The step's own exception propagates."""
    # Bound as the pipeline bound them: ``*args`` spread, ``**kwargs`` merged, positional-
    # only parameters passed by position (``func(**call)`` would pass ``args=(...)``).
    bound = inspect.BoundArguments(node.step.signature, dict(call))
    token = activate(ctx)
    try:
        outputs = split_outputs(node, node.step.func(*bound.args, **bound.kwargs))
        stored = [cache.store(node.name, n, v) for n, v in outputs.items()]
    finally:
        deactivate(token)
    return outputs, stored
