"""``shipml build``, ``shipml base build`` and ``shipml notebook``: container images."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.markup import escape

from shipml.cli.output import human_bytes, project_config, stderr, stdout

base_app = typer.Typer(
    help="Base images made without a registry (offline, air-gapped, CI).", no_args_is_help=True
)

ENGINE_OPT = typer.Option(
    None,
    "--engine",
    help="podman, docker or buildah (default: \\[containers] engine, or the first of these found).",
)


def _log(quiet: bool) -> Callable[[str], None] | None:
    if quiet:
        return None

    def log(line: str) -> None:
        stderr.print(f"[dim]{escape(line)}[/]", soft_wrap=True)

    return log


def build(
    kind: str = typer.Argument(..., help="serve, train, test, data or notebook."),
    ref: str | None = typer.Argument(
        None,
        metavar="[REF|DATASET]",
        help="serve: NAME@ALIAS, NAME/VERSION or a package folder (default: the champion, "
        "else the latest version). data: NAME\\[@VERSION] (default: the only dataset).",
    ),
    engine: str | None = ENGINE_OPT,
    base_image: str | None = typer.Option(
        None, "--base-image", help="Build FROM this image (default: \\[containers] base_image)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not show the engine's output."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Build every layer again."),
) -> None:
    """Build an image of the project (serve, train, test, data or notebook).

    Writes build/KIND/Containerfile, builds it, tags it REGISTRY/PROJECT-KIND:VERSION,
    labels it with its lineage (docs/containers.md)."""
    from shipml.containers import build_image

    config = project_config()
    image = build_image(
        config, kind, ref, engine=engine, base_image=base_image, log=_log(quiet), no_cache=no_cache
    )
    stdout.print(f"[green]built[/] {image.name} ({image.engine}) in {image.seconds:.1f}s")
    stdout.print(f"image id     {image.id}", soft_wrap=True)
    if image.size:
        stdout.print(f"size         {human_bytes(image.size)}")
    stdout.print(f"Containerfile {image.containerfile}", soft_wrap=True)
    if image.model:
        stdout.print(f"recorded on  {image.model} (tag shipml.image_digest)")


@base_app.command("build")
def base_build(
    suite: str = typer.Option("bookworm", help="Debian suite to bootstrap."),
    mirror: str | None = typer.Option(
        None, help="Debian mirror (default: the one apt uses on this machine)."
    ),
    tag: str | None = typer.Option(None, help="Image name (default localhost/shipml-base:SUITE)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Make it again even if it exists."),
    engine: str | None = ENGINE_OPT,
) -> None:
    """Make a Debian-based Python base image without a registry (debootstrap).

    Set \\[containers] base_image to the image it makes."""
    from shipml.containers import build_base, find_engine

    image = build_base(
        find_engine(engine), suite=suite, mirror=mirror, tag=tag, rebuild=rebuild, log=_log(False)
    )
    verb = "built" if image.built else "already there:"
    stdout.print(f"[green]{verb}[/] {image.tag} ({image.id[:19]}) in {image.seconds:.1f}s")
    stdout.print(f'use it: \\[containers] base_image = "{image.tag}" in shipml.toml')


def notebook(
    container: bool = typer.Option(
        False, "--container", help="Run JupyterLab in the project's notebook image."
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8888, min=1, max=65535, help="Port of JupyterLab."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
    engine: str | None = ENGINE_OPT,
) -> None:
    """JupyterLab on the project, with shipml and the store configured.

    --container runs it in the notebook image, the project folder and the store mounted."""
    from shipml.containers import run_notebook

    config = project_config()
    code = run_notebook(
        config,
        host=host,
        port=port,
        browser=not no_browser,
        container=container,
        engine=engine,
        log=_log(False),
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command()(build)
    app.command()(notebook)
    app.add_typer(base_app, name="base")
