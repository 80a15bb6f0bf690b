"""The local runner: executes a pipeline's DAG with caching, as one MLflow run.

For each step, in order: skip it if an upstream step failed; compute its cache
key (code fingerprint, parameters, input digests); reuse the cached outputs on a
hit (re-logging the metrics it logged); otherwise run it, store its outputs by
digest and record the entry. A model package among the outputs is logged to the
run and registered (a package already registered keeps its version).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipml.audit import record_event
from shipml.config import ProjectConfig
from shipml.data import DatasetStore, Snapshot
from shipml.errors import PipelineError, ShipmlError, StepFailed
from shipml.pipeline.cache import ArtifactCache, StoredOutput, cache_key, project_cache
from shipml.pipeline.context import (
    DatasetInput,
    RunContext,
    RunStopped,
)
from shipml.pipeline.display import Reporter, SilentReporter
from shipml.pipeline.executor import (
    check_json,
    execute,
    resolve_dataset,
    step_settings,
)
from shipml.pipeline.fingerprint import Fingerprinter
from shipml.pipeline.loading import load_pipeline
from shipml.pipeline.record import lineage, log_summary, run_tags
from shipml.pipeline.registration import register_package
from shipml.pipeline.result import RunResult, StepResult
from shipml.pipeline.step import DatasetRef, Graph, Node, OutputRef, Pipeline
from shipml.tracking import (
    git_info,
    registry_of,
    tracker_for,
)

if TYPE_CHECKING:
    from shipml.tracking.protocol import RunTracker


# -- running ---------------------------------------------------------------------------


def _dataset_refs(graph: Graph) -> list[str]:
    names: list[str] = []
    for node in graph.nodes:
        for value in node.arguments.values():
            if isinstance(value, DatasetRef) and value.name not in names:
                names.append(value.name)
    return names


class _Run:
    """State of one run (kept off RunResult so results stay plain data)."""

    def __init__(
        self,
        config: ProjectConfig,
        tracker: RunTracker,
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
        self.settings = step_settings(config)

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
                check_json(node.name, arg, value)
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
    tracker: RunTracker | None = None,
    tags: dict[str, str] | None = None,
) -> RunResult:
    """Run the project's pipeline locally as one MLflow run. Raises ``StepFailed`` after
    recording the failure when a step raises.

    ``tracker`` defaults to the project's, in this process; `shipml run` passes one served
    by a worker process, which has imported MLflow meanwhile. ``tags`` are added to the
    run's (`shipml tune` makes each trial a child run of the search's run with them)."""
    started = time.perf_counter()
    reporter = reporter or SilentReporter()
    pipe, graph = _plan(config, params, alias)
    store = DatasetStore(config.artifact_root, config.root)
    by_ref = {ref: resolve_dataset(config, store, ref) for ref in _dataset_refs(graph)}
    snapshots = {snap.name: snap for snap in by_ref.values()}
    tracker = tracker or tracker_for(config)
    git = git_info(config.root)
    run_id = tracker.start_run(pipe.name, {**run_tags(config, pipe.name, git), **(tags or {})})
    run = _Run(config, tracker, project_cache(config), store)
    workdir = Path(tempfile.mkdtemp(prefix="shipml-run-"))
    result = RunResult(run_id, pipe.name, "RUNNING", [], graph.params, {}, snapshots, 0.0)
    failure: BaseException | None = None
    try:
        tracker.log_params(run_id, graph.params)
        _log_inputs(run, run_id, by_ref)
        record = lineage(config, run_id, pipe.name, graph.params, snapshots, git)
        ctx = RunContext(config, run_id, record, workdir)
        reporter.pipeline_started(pipe.name, run_id, [n.name for n in graph.nodes])
        _run_steps(run, graph, ctx, use_cache, reporter, result)
        failed = result.failed_step is not None
        if not failed and register:
            _register(run, result, config, alias)
        log_summary(tracker, config, graph, result, run.pending_metrics, run.pending_tags)
        result.status = "FAILED" if failed else "FINISHED"
    except BaseException as exc:
        # Stopped on purpose (a search's deadline or a pruned trial): KILLED, not FAILED.
        result.status = "KILLED" if isinstance(exc, RunStopped) else "FAILED"
        failure = exc
        raise
    finally:
        result.seconds = time.perf_counter() - started
        try:
            _end_run(tracker, result, failure)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if result.failed_step:
        raise _step_failure(result, result.failed_step)
    return result


def _step_failure(result: RunResult, step: str) -> StepFailed:
    """The error a run whose step failed ends with: the step's error, where its traceback is."""
    failed = result.step(step)
    hint = f"full traceback: {result.traceback_file}; downstream steps were skipped"
    return StepFailed(
        step,
        f"step '{step}' failed: {failed.error}",
        hint=f"{hint}; {failed.hint}" if failed.hint else hint,
    )


def _plan(
    config: ProjectConfig, params: dict[str, Any] | None, alias: str | None
) -> tuple[Pipeline, Graph]:
    """The pipeline and its graph for ``params``, refused before anything is recorded if an
    argument is not JSON or the alias is protected."""
    if alias is not None and alias.casefold() in {p.casefold() for p in config.gates.protect}:
        raise PipelineError(
            f"run_pipeline does not move the protected alias {alias!r} ([gates] protect)",
            hint="shipml.project.run (`shipml run --alias`) registers, then promotes "
            "through the gates",
        )
    pipe = load_pipeline(config)
    graph = pipe.build({**config.pipeline.params, **(params or {})})
    for node in graph.nodes:
        for arg, value in node.arguments.items():
            if not isinstance(value, OutputRef | DatasetRef):
                check_json(node.name, arg, value)
    return pipe, graph


def _run_steps(
    run: _Run,
    graph: Graph,
    ctx: RunContext,
    use_cache: bool,
    reporter: Reporter,
    result: RunResult,
) -> None:
    """Every step in order; a failed step's downstream steps are skipped, the others run."""
    for node in graph.nodes:
        res = _run_step(run, node, ctx, use_cache, reporter)
        result.steps.append(res)
        result.metrics.update(res.metrics)
        if res.status == "failed" and result.failed_step is None:
            result.failed_step, result.error = node.name, res.error


def _log_inputs(run: _Run, run_id: str, by_ref: dict[str, Snapshot]) -> None:
    """The run's datasets: inputs of its steps, and logged to MLflow once each."""
    for ref, snap in by_ref.items():
        run.inputs[ref] = DatasetInput(snap, run.store)
    for name, snap in {s.name: s for s in by_ref.values()}.items():
        run.tracker.log_dataset(
            run_id,
            name=name,
            digest=snap.digest,
            source=snap.source,
            schema=snap.schema,
            rows=snap.rows,
            version=snap.version,
        )
        run.pending_tags[f"shipml.dataset.{name}.sha256"] = snap.digest


def _end_run(tracker: RunTracker, result: RunResult, failure: BaseException | None) -> None:
    try:
        tracker.end_run(result.run_id, result.status if result.status != "RUNNING" else "FAILED")
    except ShipmlError as exc:
        if failure is None:
            raise
        # The run's own failure (or Ctrl-C) is what the user must see first.
        failure.add_note(f"ending the MLflow run failed too: {exc.message}")


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
    if use_cache and node.step.cache and _from_cache(run, node, res, reporter):
        return res
    reporter.step_started(node.name)
    call = {k: (v.get() if isinstance(v, _Lazy) else v) for k, v in kwargs.items()}
    ctx.step, ctx.metrics = node.name, {}
    t0 = time.perf_counter()
    try:
        outputs, stored = execute(node, call, ctx, run.cache)
    except Exception as exc:
        res.seconds = time.perf_counter() - t0
        _step_failed(run, node, ctx, res, exc)
        reporter.step_finished(node.name, "failed", res.seconds, _user_frame(exc, run.config.root))
        return res
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


def _from_cache(run: _Run, node: Node, res: StepResult, reporter: Reporter) -> bool:
    """Reuse the step's cached outputs (and re-log its metrics) if its key has an entry."""
    entry = run.cache.lookup(res.key, node.output_names)
    if entry is None:
        return False
    for out in entry.outputs:
        run.stored[(node.name, out.name)] = out
    res.status, res.outputs = "cached", {o.name: o for o in entry.outputs}
    res.metrics = dict(entry.metrics)
    run.pending_metrics.update(res.metrics)  # logged with the run's summary
    reporter.step_finished(node.name, "cached", 0.0, f"from run {str(entry.run_id)[:8]}")
    return True


def _step_failed(
    run: _Run, node: Node, ctx: RunContext, res: StepResult, exc: BaseException
) -> None:
    """Record a step's failure: its message, and its traceback as an artifact of the run."""
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
