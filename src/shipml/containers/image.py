"""``shipml build KIND``: assemble a build context, write the Containerfile, build, label,
and record the image on the model version.

Everything goes under ``build/KIND/`` in the project: ``Containerfile`` (kept for
review) and ``context/`` (what the engine sees). Images are named
``REGISTRY/PROJECT-KIND:VERSION`` (``localhost/penguins-serve:3``) and also tagged
``:latest``; see docs/containers.md for the version of each kind.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.containers.containerfile import (
    KINDS,
    Recipe,
    render,
)
from shipml.containers.context import (
    LABEL_PREFIX,
    OCI,
    RUNTIME,
    copy_shipml,
    data_context,
    git_labels,
    pin,
    project_context,
    serve_context,
    shipml_version,
    write_lines,
)
from shipml.containers.engine import Engine, Log, find_engine
from shipml.errors import ContainerError

TAG_RE = re.compile(r"[^A-Za-z0-9_.-]")
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")  # no space, no newline


@dataclass
class BuiltImage:
    kind: str
    name: str  # REGISTRY/PROJECT-KIND:VERSION
    id: str  # sha256:...
    size: int
    seconds: float
    containerfile: Path
    engine: str
    labels: dict[str, str] = field(default_factory=dict)
    model: str | None = None  # NAME/VERSION baked into a serve image

    @property
    def tags(self) -> list[str]:
        return [self.name, self.name.rsplit(":", 1)[0] + ":latest"]


def image_repository(config: ProjectConfig, kind: str) -> str:
    project = re.sub(r"[^a-z0-9._-]", "-", config.project.name.lower())
    registry = config.containers.registry
    return f"{registry}/{project}-{kind}" if registry else f"{project}-{kind}"


def _context(
    config: ProjectConfig, kind: str, ref: str | None, base: str, context: Path
) -> tuple[Recipe, dict[str, str], Any, Any]:
    """Fill the build ``context`` folder afresh; the image's recipe and labels, and for a
    serve image the model version and its registry (else None)."""
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    write_lines(context / "requirements" / "runtime.txt", [pin(d) for d in RUNTIME])
    copy_shipml(context / "shipml-src")
    labels, git = git_labels(config.root)
    labels.update(
        {
            OCI + "title": f"{config.project.name}-{kind}",
            OCI + "description": config.project.description or f"shipml {kind} image",
            OCI + "base.name": base,
            LABEL_PREFIX + "kind": kind,
            LABEL_PREFIX + "project": config.project.name,
            LABEL_PREFIX + "shipml-version": shipml_version(),
        }
    )
    info = registry = None
    if kind == "serve":
        recipe, version, info, registry = serve_context(config, ref, base, context, labels)
    elif kind == "data":
        recipe, version = data_context(config, ref, base, context, labels)
    else:
        recipe, version = project_context(config, kind, base, context, labels, git)
    labels[OCI + "version"] = version
    return recipe, labels, info, registry


def build_image(
    config: ProjectConfig,
    kind: str,
    ref: str | None = None,
    *,
    engine: Engine | str | None = None,
    base_image: str | None = None,
    log: Log | None = None,
    record: bool = True,
    no_cache: bool = False,
) -> BuiltImage:
    """Build the ``kind`` image of the project; ``ref`` is the model (serve: NAME@ALIAS,
    NAME/VERSION or a package folder) or the dataset (data: NAME[@VERSION])."""
    if kind not in KINDS:
        raise ContainerError(
            f"unknown image kind {kind!r}", hint=f"choose one of {', '.join(KINDS)}"
        )
    if ref is not None and kind not in ("serve", "data"):
        raise ContainerError(
            f"`shipml build {kind}` takes no argument (got {ref!r})",
            hint="only serve (a model) and data (a dataset) take one",
        )
    base = base_image or config.containers.base_image
    if not IMAGE_RE.match(base):  # it is written into the Containerfile's FROM line
        raise ContainerError(
            f"base image {base[:80]!r} is not an image reference",
            hint="name an image: [REGISTRY/]NAME[:TAG][@sha256:DIGEST], e.g. python:3.11-slim "
            "([containers] base_image or --base-image)",
        )
    started = time.perf_counter()
    if not isinstance(engine, Engine):
        engine = find_engine(engine or config.containers.engine or None)
    folder = config.root / "build" / kind
    context = folder / "context"
    recipe, labels, info, registry = _context(config, kind, ref, base, context)
    containerfile = folder / "Containerfile"
    containerfile.write_text(render(recipe), encoding="utf-8")
    name = f"{image_repository(config, kind)}:{TAG_RE.sub('-', labels[OCI + 'version'])[:128]}"
    volumes = [v for v in config.containers.build_volumes if Path(v.split(":", 1)[0]).exists()]
    model_ref = f"{info.name}/{info.version}" if info else None
    built = BuiltImage(kind, name, "", 0, 0.0, containerfile, engine.name, labels, model_ref)
    built.id = engine.build(
        context,
        containerfile,
        tags=built.tags,
        labels=labels,
        volumes=volumes,
        log=log,
        no_cache=no_cache,
    )
    if engine.can_run:
        built.size = engine.inspect(built.id).size
    built.seconds = time.perf_counter() - started
    if record and info is not None and registry is not None:
        registry.set_version_tag(info.name, info.version, "shipml.image", name)
        registry.set_version_tag(info.name, info.version, "shipml.image_digest", built.id)
    return built
