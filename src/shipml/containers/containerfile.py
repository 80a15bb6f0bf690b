"""The Containerfile of each image kind, as text kept in ``build/KIND/Containerfile``.

Every kind starts with the same instructions, in an order that keeps the layer cache
useful: the Python environment and the pinned dependencies first (they rarely change),
then shipml itself, then what changes most (the project, the model, the data). The serve
and data images get only the runtime (the model server, onnxruntime, pandas/pyarrow);
train, test and notebook add the full toolset (MLflow, scikit-learn, skl2onnx...) on top
of the same first layers, so those are built once and shared.

The file holds no timestamps or other values that change between builds with nothing
changed: the same inputs give the same text, and a rebuild reuses every layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

KINDS = ("serve", "train", "test", "data", "notebook")
USER = "10001:10001"  # never root; numeric so that Kubernetes' runAsNonRoot can check it
HOME = "/home/shipml"
VENV = "/opt/shipml"
SERVE_PORT = 8080
NOTEBOOK_PORT = 8888


@dataclass
class Recipe:
    """What goes into one image; ``render`` turns it into a Containerfile."""

    kind: str
    base_image: str
    full: bool = False  # the full toolset (train, test, notebook) on top of the runtime
    extra_requirements: list[str] = field(default_factory=list)  # files under requirements/
    project_requirements: bool = False  # the project has a requirements.txt
    copies: list[tuple[str, str]] = field(default_factory=list)  # (context path, image path)
    writable: list[str] = field(default_factory=list)  # folders the user may write
    links: list[tuple[str, str]] = field(default_factory=list)  # (link, target)
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    expose: int | None = None
    healthcheck: list[str] | None = None
    entrypoint: list[str] = field(default_factory=lambda: ["shipml"])
    cmd: list[str] = field(default_factory=list)


def _json(args: list[str]) -> str:
    return json.dumps(args)


def render(recipe: Recipe) -> str:
    r = recipe
    lines = [
        f"# shipml {r.kind} image. Made by `shipml build {r.kind}`; kept for review.",
        "# See docs/containers.md. Edit the project, not this file: it is rewritten.",
        f"FROM {r.base_image}",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \\",
        f"    PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV={VENV} PATH={VENV}/bin:$PATH \\",
        f"    HOME={HOME} LANG=C.UTF-8",
        f"RUN python3 -m venv {VENV} && mkdir -p {HOME} && chown {USER} {HOME}",
        "# The runtime: model server, onnxruntime, pandas, pyarrow (pinned to the versions",
        "# shipml was tested with on the machine that built the image).",
        f"COPY requirements/runtime.txt {VENV}/requirements/runtime.txt",
        f"RUN pip install -r {VENV}/requirements/runtime.txt",
    ]
    if r.full:
        lines += [
            "# The full toolset: MLflow, scikit-learn, skl2onnx... (all of shipml's dependencies).",
            f"COPY requirements/full.txt {VENV}/requirements/full.txt",
            f"RUN pip install -r {VENV}/requirements/full.txt",
        ]
    for name in r.extra_requirements:
        lines += [
            f"COPY requirements/{name} {VENV}/requirements/{name}",
            f"RUN pip install -r {VENV}/requirements/{name}",
        ]
    if r.project_requirements:
        lines += [
            "# The project's own requirements.txt.",
            f"COPY project/requirements.txt {VENV}/requirements/project.txt",
            f"RUN pip install -r {VENV}/requirements/project.txt",
        ]
    lines += [
        "# shipml itself (the same code as the machine that built the image).",
        f"COPY shipml-src {VENV}/src/shipml",
        f"RUN pip install --no-deps {VENV}/src/shipml && rm -rf {VENV}/src/shipml/build",
    ]
    for src, dst in r.copies:
        owner = f"--chown={USER} " if dst in r.writable else ""
        lines.append(f"COPY {owner}{src} {dst}")
    extra_dirs = [d for d in r.writable if d not in {dst for _, dst in r.copies}]
    if extra_dirs:
        lines.append(f"RUN mkdir -p {' '.join(extra_dirs)} && chown {USER} {' '.join(extra_dirs)}")
    for link, target in r.links:
        lines.append(f"RUN ln -s {target} {link}")
    if r.env:
        lines.append("ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(r.env.items())))
    lines.append(f"WORKDIR {r.workdir}")
    lines.append(f"USER {USER}")
    if r.expose:
        lines.append(f"EXPOSE {r.expose}")
    if r.healthcheck:
        lines.append("HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \\")
        lines.append(f"    CMD {_json(r.healthcheck)}")
    lines.append(f"ENTRYPOINT {_json(r.entrypoint)}")
    if r.cmd:
        lines.append(f"CMD {_json(r.cmd)}")
    return "\n".join(lines) + "\n"


def serve_recipe(base: str, name: str, version: str, *, skops: bool) -> Recipe:
    probe = (
        "import urllib.request; urllib.request.urlopen("
        f"'http://127.0.0.1:{SERVE_PORT}/v2/health/ready', timeout=4)"
    )
    return Recipe(
        kind="serve",
        base_image=base,
        extra_requirements=["skops.txt"] if skops else [],
        copies=[("model", "/model"), ("shipml.toml", "/srv/shipml.toml")],
        workdir="/srv",
        expose=SERVE_PORT,
        healthcheck=["python3", "-c", probe],
        entrypoint=["shipml"],
        cmd=[
            "serve",
            "/model",
            "--name",
            name,
            "--model-version",
            version,
            "--host",
            "0.0.0.0",
            "--port",
            str(SERVE_PORT),
        ],
    )


def data_recipe(base: str) -> Recipe:
    return Recipe(
        kind="data",
        base_image=base,
        copies=[("data", "/data")],
        workdir="/data",
        entrypoint=["shipml"],
        cmd=["data", "verify", "/data"],
    )


def project_recipe(kind: str, base: str, *, project_requirements: bool) -> Recipe:
    """train, test and notebook: the project in /project, writable by the image's user."""
    recipe = Recipe(
        kind=kind,
        base_image=base,
        full=True,
        project_requirements=project_requirements,
        copies=[("project", "/project")],
        writable=["/project"],
        workdir="/project",
    )
    if kind == "train":
        recipe.cmd = ["run"]
    elif kind == "test":
        recipe.extra_requirements = ["test.txt"]
        recipe.writable.append("/results")
        recipe.links.append(("/project/results", "/results"))
        recipe.entrypoint = ["shipml", "test"]
    elif kind == "notebook":
        recipe.extra_requirements = ["notebook.txt"]
        recipe.expose = NOTEBOOK_PORT
        recipe.cmd = ["notebook", "--host", "0.0.0.0", "--port", str(NOTEBOOK_PORT)]
    return recipe
