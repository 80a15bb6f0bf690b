"""One step run on its own, its inputs and outputs passing through the artifact store.

This is what a Kubeflow task runs (``shipml step run NAME``): each task is a separate
pod, so a step cannot hand its outputs to the next one in memory. It writes them to

    {artifact root}/steps/objects/<kind>-<digest>[.ext]   content-addressed, shared
    {artifact root}/steps/manifests/<name>.json           what the step produced

and prints the manifest's URI; a downstream step is given that URI (``--input
NODE=URI``). The manifest is named by the same cache key as the local runner's (code
fingerprint, arguments, input digests) with the pipeline and node (``manifest_name``),
so a step whose manifest exists is not run again. The artifact root is ``[artifacts]
root``: an object store (``s3://...``) on a cluster, any folder on one machine.

A manifest lists the types of its skops outputs, but whoever can write the store can
write a manifest: an upstream output is loaded under the cache's rule (``trust.py``),
and one holding another type is an ``UnsafeModelError`` naming it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.data import DatasetStore
from shipml.errors import PipelineError, ShipmlError, StepFailed
from shipml.pipeline.cache import (
    ArtifactCache,
    StoredOutput,
    cache_key,
    object_name_ok,
    project_cache,
)
from shipml.pipeline.context import DatasetInput, RunContext
from shipml.pipeline.executor import (
    check_json,
    dataset_lineage,
    execute,
    resolve_dataset,
    step_settings,
)
from shipml.pipeline.fingerprint import Fingerprinter
from shipml.pipeline.loading import load_pipeline
from shipml.pipeline.step import DatasetRef, Node, OutputRef

FORMAT = 2  # 2: outputs carry the sha256 of their files, checked on load
COMPLETE = ".complete"  # beside a folder object: all its files are there


@dataclass
class StepRun:
    step: str
    status: str  # done | cached
    key: str
    manifest: str  # URI of the manifest: the value a downstream step is given
    outputs: list[StoredOutput] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class Exchange:
    """The ``steps/`` area of the artifact store, through fsspec (a folder or a bucket)."""

    def __init__(self, root: str) -> None:
        import fsspec

        self.root = root.rstrip("/") + "/steps"
        self.fs, self.base = fsspec.core.url_to_fs(self.root)

    def manifest_uri(self, name: str) -> str:
        return f"{self.root}/manifests/{name}.json"

    def _path(self, uri: str) -> str:
        if not uri.startswith(self.root + "/") or "/.." in uri[len(self.root) :]:
            raise PipelineError(
                f"{uri} is not in this project's artifact store ({self.root})",
                hint="pass the URI `shipml step run` printed for the upstream step",
            )
        return self.base + uri[len(self.root) :]

    def read_manifest(self, uri: str) -> dict[str, Any]:
        path = self._path(uri)
        try:
            data = json.loads(self.fs.cat_file(path))
        except FileNotFoundError as exc:
            raise PipelineError(
                f"no step manifest at {uri}", hint="run the upstream step first"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PipelineError(f"{uri} is not a shipml step manifest")
        return data

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self._path(self.manifest_uri(name))))

    def fetch(self, out: StoredOutput, cache: ArtifactCache) -> None:
        """Copy an object from the store into the local cache (if it is not there yet)."""
        if not object_name_ok(out.file):  # a forged manifest's "../../x": written nowhere
            raise PipelineError(
                f"a step manifest names the output {out.file[:80]!r}, which is not a name "
                "shipml gives: the manifest was not written by `shipml step run`",
                hint="run the upstream step again (--no-cache) and pass the URI it prints",
            )
        local = cache.objects / out.file
        if local.exists():
            return
        cache.objects.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache.objects, prefix=".fetch-"))
        remote = f"{self.base}/objects/{out.file}"
        if self.fs.isdir(remote):
            self.fs.get(remote + "/", str(tmp / out.file) + "/", recursive=True)
        else:
            self.fs.get(remote, str(tmp / out.file))
        (tmp / out.file).replace(local)
        shutil.rmtree(tmp, ignore_errors=True)

    def publish(self, outputs: list[StoredOutput], cache: ArtifactCache) -> None:
        """Upload outputs so that an object that exists is complete: a file under a
        temporary name, then moved in place; a folder (a model package) file by file, then
        its ``.complete`` marker (an object store cannot rename a folder at once)."""
        self.fs.makedirs(f"{self.base}/objects", exist_ok=True)
        for out in outputs:
            remote = f"{self.base}/objects/{out.file}"
            local = cache.objects / out.file
            if local.is_dir():
                marker = f"{remote}{COMPLETE}"
                if self.fs.exists(marker):
                    continue  # content-addressed: already there
                for file in sorted(p for p in local.rglob("*") if p.is_file()):
                    target = f"{remote}/{file.relative_to(local).as_posix()}"
                    self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                    self.fs.put_file(str(file), target)
                self.fs.pipe_file(marker, b"")
            elif not self.fs.exists(remote):
                tmp = f"{self.base}/objects/.tmp-{time.time_ns()}-{out.file}"
                self.fs.put_file(str(local), tmp)
                self.fs.mv(tmp, remote)

    def write_manifest(self, name: str, data: dict[str, Any]) -> str:
        """Written last, under a temporary name first: a manifest means complete outputs."""
        uri = self.manifest_uri(name)
        path = self._path(uri)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{time.time_ns()}"
        self.fs.pipe_file(tmp, json.dumps(data, indent=2).encode())
        self.fs.mv(tmp, path)
        return uri


def manifest_name(key: str, pipeline: str, node: str) -> str:
    """A manifest's name: the step's cache key with the pipeline and the node it ran as. A
    manifest names its step, so by the key alone a step called twice with the same inputs
    (``measure``, ``measure_2``), or shared by two pipelines, handed on a manifest naming
    the other node, and the downstream step refused it."""
    return hashlib.sha256(f"{key}\0{pipeline}\0{node}".encode()).hexdigest()


def _node(graph: Any, name: str) -> Node:
    try:
        node: Node = graph.node(name)
    except KeyError:
        names = ", ".join(n.name for n in graph.nodes)
        raise PipelineError(
            f"pipeline '{graph.pipeline}' has no step {name!r}", hint=f"its steps: {names}"
        ) from None
    return node


def run_step(
    config: ProjectConfig,
    name: str,
    inputs: list[str] | None = None,
    *,
    params: dict[str, Any] | None = None,
    use_cache: bool = True,
) -> StepRun:
    """Run step ``name`` of the project's pipeline. ``inputs`` are the manifest URIs its
    upstream steps printed (a manifest names the step that wrote it); an entry may be
    written ``STEP=URI`` to say which step it should come from. Raises StepFailed when
    the step raises."""
    started = time.perf_counter()
    graph = load_pipeline(config).build({**config.pipeline.params, **(params or {})})
    node = _node(graph, name)
    exchange = Exchange(config.artifact_root)
    upstream, given = _upstream(exchange, node, inputs or [])
    cache = project_cache(config)
    args = _Arguments(config, exchange, cache)
    args.gather(node, upstream, given)
    kwargs, digests, datasets = args.kwargs, args.digests, args.datasets
    code, _files = Fingerprinter(config.root).fingerprint(node.step)
    key = cache_key(node.step.name, code, args.params, digests, step_settings(config))
    own = manifest_name(key, graph.pipeline, name)
    if use_cache and node.step.cache and exchange.exists(own):
        uri = exchange.manifest_uri(own)
        data = exchange.read_manifest(uri)
        outputs = [StoredOutput(**o) for o in data["outputs"]]
        seconds = time.perf_counter() - started
        return StepRun(name, "cached", key, uri, outputs, data.get("metrics", {}), seconds)
    call = {k: cache.load(v) if isinstance(v, StoredOutput) else v for k, v in kwargs.items()}
    lineage = {
        "pipeline": graph.pipeline,
        "params": graph.params,
        "datasets": datasets,
        "step": name,
        "cache_key": key,
    }
    stored, metrics = _execute(config, node, call, lineage, cache)
    exchange.publish(stored, cache)
    manifest = exchange.write_manifest(
        own,
        {
            "format": FORMAT,
            "step": name,
            "pipeline": graph.pipeline,
            "key": key,
            "outputs": [asdict(o) for o in stored],
            "metrics": metrics,
            "inputs": given,
            "params": args.params,
            "datasets": datasets,
            "seconds": round(time.perf_counter() - started, 4),
        },
    )
    return StepRun(name, "done", key, manifest, stored, metrics, time.perf_counter() - started)


class _Arguments:
    """A step's arguments: upstream outputs fetched from the exchange, datasets resolved,
    JSON values checked; with the digests and parameters its cache key is made of."""

    def __init__(self, config: ProjectConfig, exchange: Exchange, cache: ArtifactCache) -> None:
        self.config, self.exchange, self.cache = config, exchange, cache
        self.store = DatasetStore(config.artifact_root, config.root)
        self.kwargs: dict[str, Any] = {}
        self.params: dict[str, Any] = {}
        self.digests: dict[str, str] = {}
        self.datasets: dict[str, Any] = {}

    def gather(
        self, node: Node, upstream: dict[str, dict[str, Any]], given: dict[str, str]
    ) -> None:
        for arg, value in node.arguments.items():
            if isinstance(value, OutputRef):
                outs = {o["name"]: StoredOutput(**o) for o in upstream[value.node]["outputs"]}
                if value.name not in outs:
                    raise PipelineError(f"{given[value.node]} has no output {value.name!r}")
                out = outs[value.name]
                self.digests[arg] = out.digest
                self.exchange.fetch(out, self.cache)
                self.kwargs[arg] = out
            elif isinstance(value, DatasetRef):
                snap = resolve_dataset(self.config, self.store, value.name)
                self.digests[arg] = snap.digest
                self.datasets[snap.name] = dataset_lineage(snap)
                self.kwargs[arg] = DatasetInput(snap, self.store)
            else:
                check_json(node.name, arg, value)
                self.params[arg] = self.kwargs[arg] = value


def _upstream(
    exchange: Exchange, node: Node, inputs: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The manifests of the step's upstream steps, by step, and the URI each came from;
    exactly the step's upstream steps, each from where ``STEP=URI`` says."""
    upstream: dict[str, dict[str, Any]] = {}
    given: dict[str, str] = {}
    for item in inputs:
        expected, sep, uri = item.partition("=")
        if not sep or "/" in expected or ":" in expected:
            expected, uri = "", item
        data = exchange.read_manifest(uri)
        if expected and data.get("step") != expected:
            raise PipelineError(
                f"{uri} holds the outputs of step '{data.get('step')}', not of '{expected}'",
                hint="check which URI goes where",
            )
        upstream[str(data.get("step"))] = data
        given[str(data.get("step"))] = uri
    missing = [up for up in node.upstream if up not in upstream]
    if missing:
        raise PipelineError(
            f"step '{node.name}' needs the outputs of {', '.join(missing)}",
            hint="pass "
            + " ".join(f"--input URI_OF_{up.upper()}" for up in missing)
            + " (the manifest URI each of those steps printed)",
        )
    extra = sorted(set(upstream) - set(node.upstream))
    if extra:
        raise PipelineError(
            f"step '{node.name}' does not take the outputs of {', '.join(extra)}",
            hint=f"its upstream steps: {', '.join(node.upstream) or 'none'}",
        )
    return upstream, given


def _execute(
    config: ProjectConfig,
    node: Node,
    call: dict[str, Any],
    lineage: dict[str, Any],
    cache: ArtifactCache,
) -> tuple[list[StoredOutput], dict[str, float]]:
    """Run the step (the runner's executor); its failure is a StepFailed naming it."""
    name = node.name
    workdir = Path(tempfile.mkdtemp(prefix="shipml-step-"))
    ctx = RunContext(config, None, lineage, workdir, step=name)
    try:
        _values, stored = execute(node, call, ctx, cache)
    except ShipmlError as exc:
        raise StepFailed(name, f"step '{name}' failed: {exc.message}", hint=exc.hint) from exc
    except Exception as exc:
        raise StepFailed(
            name,
            f"step '{name}' failed: {type(exc).__name__}: {exc}",
            hint="`shipml --debug step run ...` shows the traceback",
        ) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return stored, dict(ctx.metrics)
