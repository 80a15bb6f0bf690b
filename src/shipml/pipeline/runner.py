"""The local runner: executes a pipeline's DAG with caching, as one MLflow run.

For each step, in order: skip it if an upstream step failed; compute its cache
key (code fingerprint, parameters, input digests); reuse the cached outputs on a
hit (re-logging the metrics it logged); otherwise run it, store its outputs by
digest and record the entry. A model package among the outputs is logged to the
run and registered (a package already registered keeps its version).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from shipml.audit import record_event
from shipml.config import ProjectConfig
from shipml.data import DatasetStore, Snapshot, parse_ref
from shipml.errors import DataError, PipelineError, ShipmlError, StepFailed
from shipml.pipeline.cache import ArtifactCache, StoredOutput, cache_key
from shipml.pipeline.context import (
    DatasetInput,
    RunContext,
    RunStopped,
    activate,
    deactivate,
)
from shipml.pipeline.display import Reporter, SilentReporter
from shipml.pipeline.fingerprint import Fingerprinter
from shipml.pipeline.registration import register_package
from shipml.pipeline.step import DatasetRef, Graph, Node, OutputRef, Pipeline
from shipml.tracking import (
    Tracker,
    VersionInfo,
    environment,
    git_info,
    package_versions,
    registry_of,
    tracker_for,
)

if TYPE_CHECKING:
    from shipml.tracking.worker import RemoteTracker


@dataclass
class StepResult:
    name: str
    status: str  # done | cached | failed | skipped
    seconds: float = 0.0
    key: str = ""
    outputs: dict[str, StoredOutput] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    hint: str | None = None
    code_files: list[str] = field(default_factory=list)
    traceback_file: str | None = None


@dataclass
class RunResult:
    run_id: str
    pipeline: str
    status: str  # FINISHED | FAILED
    steps: list[StepResult]
    params: dict[str, Any]
    metrics: dict[str, float]
    datasets: dict[str, Snapshot]
    seconds: float
    model_version: VersionInfo | None = None
    model_created: bool = False
    failed_step: str | None = None
    error: str | None = None
    traceback_file: str | None = None

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    @property
    def executed(self) -> list[str]:
        return [s.name for s in self.steps if s.status == "done"]

    @property
    def cached(self) -> list[str]:
        return [s.name for s in self.steps if s.status == "cached"]


# -- loading ---------------------------------------------------------------------------


def load_module(config: ProjectConfig) -> ModuleType:
    """Import the project's pipeline file afresh (project modules are re-imported too,
    so edits to helpers take effect in a long-lived process)."""
    file = config.path(config.pipeline.file)
    if not file.is_file():
        raise PipelineError(
            f"pipeline file not found: {file}",
            hint="set [pipeline] file in shipml.toml to your pipeline module",
        )
    root = str(config.root)
    # The project's own top-level modules (features.py...): a module of that name
    # imported from another project earlier in this process must not stand in for it.
    own = {p.stem for p in config.root.glob("*.py")} | {
        p.parent.name for p in config.root.glob("*/__init__.py")
    }
    # Thousands of modules are loaded (MLflow alone brings ~2,000): compare resolved paths
    # only for files that can lie in the project, i.e. not in an installed package.
    for name, mod in list(sys.modules.items()):
        mod_file = getattr(mod, "__file__", None)
        if (
            mod_file
            and "site-packages" not in mod_file
            and not mod_file.startswith(sys.base_prefix)
            and (os.path.realpath(mod_file).startswith(root + "/") or name.partition(".")[0] in own)
        ):
            del sys.modules[name]
    if root not in sys.path:
        sys.path.insert(0, root)
    name = file.stem
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise PipelineError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ShipmlError:
        raise
    except Exception as exc:
        del sys.modules[name]
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise PipelineError(
            f"importing {file.name} failed: {type(exc).__name__}: {exc} "
            f"({Path(frame.filename).name}:{frame.lineno})",
            hint="fix the error above; `shipml --debug run` shows the whole traceback",
        ) from exc
    return module


def load_pipeline(config: ProjectConfig) -> Pipeline:
    module = load_module(config)
    found = {p.name: p for p in vars(module).values() if isinstance(p, Pipeline)}
    wanted = config.pipeline.name
    if wanted:
        if wanted not in found:
            raise PipelineError(
                f"no pipeline named {wanted!r} in {config.pipeline.file} "
                f"(found: {', '.join(found) or 'none'})",
                hint="check [pipeline] name in shipml.toml",
            )
        return found[wanted]
    if len(found) != 1:
        raise PipelineError(
            f"{config.pipeline.file} defines {len(found)} pipelines "
            f"({', '.join(found) or 'none'}); shipml needs to know which one to run",
            hint="decorate one function with @shipml.pipeline, or set [pipeline] name",
        )
    return next(iter(found.values()))


# -- running ---------------------------------------------------------------------------


def _dataset_refs(graph: Graph) -> list[str]:
    names: list[str] = []
    for node in graph.nodes:
        for value in node.arguments.values():
            if isinstance(value, DatasetRef) and value.name not in names:
                names.append(value.name)
    return names


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


def _check_json(step: str, arg: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise PipelineError(
            f"step '{step}' got {type(value).__name__} for '{arg}', which is neither a step "
            "output, a dataset nor a JSON value",
            hint="pass step outputs, dataset(...) or plain values (numbers, strings, lists)",
        ) from exc


class _Run:
    """State of one run (kept off RunResult so results stay plain data)."""

    def __init__(
        self,
        config: ProjectConfig,
        tracker: Tracker | RemoteTracker,
        cache: ArtifactCache,
        store: DatasetStore,
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.cache = cache
        self.store = store
        self.fingerprinter = Fingerprinter(config.root)
        self.values: dict[tuple[str, str], Any] = {}
        self.stored: dict[tuple[str, str], StoredOutput] = {}
        self.inputs: dict[str, DatasetInput] = {}
        self.broken: set[str] = set()  # failed or skipped steps
        # Written in one batch at the end of the run (one transaction, not one per step).
        self.pending_metrics: dict[str, float] = {}
        self.pending_tags: dict[str, str] = {}
        # Settings a step's result depends on (package_model reads the parity tolerance).
        self.settings = {"parity_tolerance": config.model.parity_tolerance}

    def value(self, ref: OutputRef) -> Any:
        key = (ref.node, ref.name)
        if key not in self.values:
            self.values[key] = self.cache.load(self.stored[key])
        return self.values[key]

    def materialize(self, node: Node) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
        """Arguments for the call, JSON params and input digests for the cache key."""
        kwargs: dict[str, Any] = {}
        params: dict[str, Any] = {}
        digests: dict[str, str] = {}
        for arg, value in node.arguments.items():
            if isinstance(value, OutputRef):
                digests[arg] = self.stored[(value.node, value.name)].digest
                kwargs[arg] = _Lazy(self, value)
            elif isinstance(value, DatasetRef):
                digests[arg] = self.inputs[value.name].digest
                kwargs[arg] = self.inputs[value.name]
            else:
                _check_json(node.name, arg, value)
                params[arg] = value
                kwargs[arg] = value
        return kwargs, params, digests


class _Lazy:
    """An upstream output, loaded from the cache only if the step actually runs."""

    def __init__(self, run: _Run, ref: OutputRef) -> None:
        self.run, self.ref = run, ref

    def get(self) -> Any:
        return self.run.value(self.ref)


def run_pipeline(
    config: ProjectConfig,
    *,
    params: dict[str, Any] | None = None,
    use_cache: bool = True,
    reporter: Reporter | None = None,
    register: bool = True,
    alias: str | None = None,
    tracker: Tracker | RemoteTracker | None = None,
    tags: dict[str, str] | None = None,
) -> RunResult:
    """Run the project's pipeline locally as one MLflow run. Raises ``StepFailed`` after
    recording the failure when a step raises.

    ``tracker`` defaults to the project's, in this process; `shipml run` passes one served
    by a worker process, which has imported MLflow meanwhile. ``tags`` are added to the
    run's (`shipml tune` makes each trial a child run of the search's run with them)."""
    started = time.perf_counter()
    if alias is not None and alias in config.gates.protect:
        raise PipelineError(
            f"run_pipeline does not move the protected alias {alias!r} ([gates] protect)",
            hint="shipml.project.run (`shipml run --alias`) registers, then promotes "
            "through the gates",
        )
    extra_tags = dict(tags or {})
    reporter = reporter or SilentReporter()
    pipe = load_pipeline(config)
    graph = pipe.build({**config.pipeline.params, **(params or {})})
    for node in graph.nodes:
        for arg, value in node.arguments.items():
            if not isinstance(value, OutputRef | DatasetRef):
                _check_json(node.name, arg, value)
    store = DatasetStore(config.artifact_root, config.root)
    by_ref = {ref: resolve_dataset(config, store, ref) for ref in _dataset_refs(graph)}
    snapshots = {snap.name: snap for snap in by_ref.values()}
    tracker = tracker or tracker_for(config)
    git = git_info(config.root)
    tags = {
        "shipml.pipeline": pipe.name,
        "mlflow.source.name": str(config.pipeline.file),
        "mlflow.source.type": "LOCAL",
        "shipml.python": sys.version.split()[0],
    }
    if git["commit"]:
        tags["mlflow.source.git.commit"] = git["commit"]
        tags["shipml.git.dirty"] = str(git["dirty"]).lower()
        if git.get("branch"):
            tags["mlflow.source.git.branch"] = git["branch"]
    else:
        tags["shipml.git.commit"] = "none (not a git repository)"
    tags.update(extra_tags)
    run_id = tracker.start_run(pipe.name, tags)
    run = _Run(config, tracker, ArtifactCache(config.cache_dir), store)
    workdir = Path(tempfile.mkdtemp(prefix="shipml-run-"))
    result = RunResult(run_id, pipe.name, "RUNNING", [], graph.params, {}, snapshots, 0.0)
    failure: BaseException | None = None
    try:
        tracker.log_params(run_id, graph.params)
        for ref, snap in by_ref.items():
            run.inputs[ref] = DatasetInput(snap, store)
        for name, snap in snapshots.items():
            tracker.log_dataset(
                run_id,
                name=name,
                digest=snap.digest,
                source=snap.source,
                schema=snap.schema,
                rows=snap.rows,
                version=snap.version,
            )
            run.pending_tags[f"shipml.dataset.{name}.sha256"] = snap.digest
        lineage = {
            "run_id": run_id,
            "experiment": config.experiment_name,
            "pipeline": pipe.name,
            "params": graph.params,
            "datasets": {
                n: {"version": s.version, "sha256": s.digest, "source": s.source, "rows": s.rows}
                for n, s in snapshots.items()
            },
            "git": git,
            "packages": package_versions(),
            "python": sys.version.split()[0],
        }
        ctx = RunContext(config, run_id, lineage, workdir)
        reporter.pipeline_started(pipe.name, run_id, [n.name for n in graph.nodes])
        for node in graph.nodes:
            res = _run_step(run, node, ctx, use_cache, reporter)
            result.steps.append(res)
            result.metrics.update(res.metrics)
            if res.status == "failed" and result.failed_step is None:
                result.failed_step, result.error = node.name, res.error
        failed = result.failed_step is not None
        if not failed and register:
            _register(run, result, config, alias)
        _log_summary(run, run_id, graph, result)
        result.status = "FAILED" if failed else "FINISHED"
    except BaseException as exc:
        # Stopped on purpose (a search's deadline or a pruned trial): KILLED, not FAILED.
        result.status = "KILLED" if isinstance(exc, RunStopped) else "FAILED"
        failure = exc
        raise
    finally:
        result.seconds = time.perf_counter() - started
        try:
            tracker.end_run(run_id, result.status if result.status != "RUNNING" else "FAILED")
        except ShipmlError as exc:
            if failure is None:
                raise
            # The run's own failure (or Ctrl-C) is what the user must see first.
            failure.add_note(f"ending the MLflow run failed too: {exc.message}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if result.failed_step:
        failed_res = result.step(result.failed_step)
        hint = f"full traceback: {result.traceback_file}; downstream steps were skipped"
        raise StepFailed(
            result.failed_step,
            f"step '{result.failed_step}' failed: {failed_res.error}",
            hint=f"{hint}; {failed_res.hint}" if failed_res.hint else hint,
        )
    return result


def _run_step(
    run: _Run, node: Node, ctx: RunContext, use_cache: bool, reporter: Reporter
) -> StepResult:
    res = StepResult(node.name, "skipped")
    if any(up in run.broken for up in node.upstream):
        run.broken.add(node.name)
        reporter.step_finished(node.name, "skipped", 0.0, "an upstream step failed")
        return res
    kwargs, params, digests = run.materialize(node)
    code, files = run.fingerprinter.fingerprint(node.step)
    res.key = cache_key(node.step.name, code, params, digests, run.settings)
    res.code_files = files
    if use_cache and node.step.cache:
        entry = run.cache.lookup(res.key)
        if entry is not None:
            for out in entry.outputs:
                run.stored[(node.name, out.name)] = out
            res.status, res.outputs, res.metrics = "cached", {o.name: o for o in entry.outputs}, {}
            res.metrics = dict(entry.metrics)
            run.pending_metrics.update(res.metrics)  # logged with the run's summary
            reporter.step_finished(node.name, "cached", 0.0, f"from run {str(entry.run_id)[:8]}")
            return res
    reporter.step_started(node.name)
    call = {k: (v.get() if isinstance(v, _Lazy) else v) for k, v in kwargs.items()}
    ctx.step, ctx.metrics = node.name, {}
    token = activate(ctx)
    t0 = time.perf_counter()
    try:
        value = node.step.func(**call)
        outputs = _split_outputs(node, value)
        stored = [run.cache.store(node.name, n, v) for n, v in outputs.items()]
    except Exception as exc:
        res.seconds = time.perf_counter() - t0
        res.status = "failed"
        if isinstance(exc, ShipmlError):
            res.error, res.hint = exc.message, exc.hint
        else:
            res.error = f"{type(exc).__name__}: {exc}"
        tb = "".join(traceback.format_exception(exc))
        artifact = f"steps/{node.name}/traceback.txt"
        run.tracker.log_text(ctx.run_id or "", tb, artifact)
        uri = run.tracker.artifact_uri(ctx.run_id or "")
        res.traceback_file = f"{uri}/{artifact}".removeprefix("file://")
        run.broken.add(node.name)
        reporter.step_finished(node.name, "failed", res.seconds, _user_frame(exc, run.config.root))
        return res
    finally:
        deactivate(token)
    res.seconds = time.perf_counter() - t0
    res.metrics = dict(ctx.metrics)
    for out, (name, val) in zip(stored, outputs.items(), strict=True):
        run.stored[(node.name, out.name)] = out
        run.values[(node.name, name)] = val
    res.outputs = {o.name: o for o in stored}
    res.status = "done"
    # Metrics first: a step whose metrics the store refuses is not cached, so the next
    # run fails at the same place instead of registering a model from a failed run.
    run.tracker.log_metrics(ctx.run_id or "", res.metrics)
    if node.step.cache:
        run.cache.save(res.key, node.name, stored, res.metrics, res.seconds, ctx.run_id)
    reporter.step_finished(node.name, "done", res.seconds)
    return res


def _split_outputs(node: Node, value: Any) -> dict[str, Any]:
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


def _user_frame(exc: BaseException, root: Path) -> str:
    """``file:line`` of the innermost frame in project code, for a one-line summary."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        try:
            rel = Path(frame.filename).resolve().relative_to(root)
        except ValueError:
            continue
        return f"{type(exc).__name__} at {rel}:{frame.lineno}"
    return type(exc).__name__


def _register(run: _Run, result: RunResult, config: ProjectConfig, alias: str | None) -> None:
    packages = [
        (step, out)
        for step in result.steps
        for out in step.outputs.values()
        if out.kind == "package"
    ]
    if not packages:
        return
    _, out = packages[-1]
    registry = registry_of(run.tracker)
    name = config.model_name
    result.model_version, result.model_created = register_package(
        run.tracker, name, result.run_id, run.cache.objects / out.file
    )
    if alias and result.model_version is not None:
        before = registry.aliases(name).get(alias)
        result.model_version = registry.set_alias(name, result.model_version.version, alias)
        record_event(
            config,
            {
                "event": "alias",
                "model": name,
                "alias": alias,
                "version": result.model_version.version,
                "previous_version": before,
                "by": "shipml run",
                "run_id": result.run_id,
            },
        )
    run.pending_tags.update(
        {"shipml.model.name": name, "shipml.model.version": result.model_version.version}
    )


def _log_summary(run: _Run, run_id: str, graph: Graph, result: RunResult) -> None:
    tracker = run.tracker
    steps = [
        {
            "name": s.name,
            "status": s.status,
            "seconds": round(s.seconds, 4),
            "cache_key": s.key,
            "code_files": s.code_files,
            "outputs": {n: {"kind": o.kind, "digest": o.digest} for n, o in s.outputs.items()},
            "error": s.error,
        }
        for s in result.steps
    ]
    tracker.log_text(
        run_id,
        json.dumps({"steps": steps, "edges": graph.edges()}, indent=2),
        "pipeline/steps.json",
    )
    tracker.log_text(
        run_id,
        json.dumps(environment(run.config.cache_dir, run.config.root), indent=2),
        "environment.json",
    )
    cached = sum(s.status == "cached" for s in result.steps)
    tags = {**run.pending_tags, "shipml.steps.cached": f"{cached}/{len(result.steps)}"}
    if result.failed_step:
        result.traceback_file = result.step(result.failed_step).traceback_file
        tags["shipml.failed_step"] = result.failed_step
    tracker.log_batch(run_id, run.pending_metrics, tags)
