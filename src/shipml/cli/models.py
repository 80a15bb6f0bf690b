"""``shipml models``: the registry (versions, aliases, packages)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipml.cli.output import human_bytes, project_config, stderr, stdout
from shipml.errors import GateFailed

if TYPE_CHECKING:  # MLflow and the model layer load when a command needs them
    from shipml.tracking import Registry

app = typer.Typer(
    help="Registered models: versions, aliases (champion, challenger), packages.",
    no_args_is_help=True,
)


def _registry() -> Registry:
    from shipml.tracking import registry_for

    return registry_for(project_config())


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


@app.command("ls")
def ls() -> None:
    """List registered models, their versions and aliases."""
    registry = _registry()
    names = registry.model_names()
    if not names:
        stdout.print("no registered models yet; `shipml run` registers one")
        return
    table = Table("model", "versions", "latest", "aliases")
    for name in names:
        versions = registry.versions(name)
        aliases = ", ".join(f"{a} → v{v}" for a, v in sorted(registry.aliases(name).items()))
        table.add_row(name, str(len(versions)), versions[-1].version if versions else "-", aliases)
    stdout.print(table)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION, NAME, or a folder."),
) -> None:
    """Show a model version (or all versions of NAME): lineage, metrics and package files."""
    if "@" not in ref and "/" not in ref and not ref.startswith("."):
        registry = _registry()
        table = Table("version", "aliases", "created", "run", "onnx sha256")
        for v in registry.versions(ref):
            table.add_row(
                v.version,
                ", ".join(v.aliases),
                _when(v.created),
                v.run_id or "-",
                v.tags.get("shipml.onnx_sha256", "")[:16],
            )
        stdout.print(f"[bold]{ref}[/]")
        stdout.print(table)
        return
    from shipml.model import ModelPackage
    from shipml.tracking import parse_model_ref, resolve_model

    parsed = parse_model_ref(ref)
    if parsed.path is not None:
        package = ModelPackage.load(parsed.path)
        stdout.print(f"[bold]package[/] {parsed.path}")
    else:
        registry = _registry()
        model = resolve_model(None, parsed, full=True, registry=registry)
        package = ModelPackage.load(model.path)
        _print_version(registry, model.info)
    lineage = package.lineage
    git = lineage.get("git") or {}
    stdout.print(f"format   {package.format}  (onnx sha256 {package.onnx_sha256 or '-'})")
    stdout.print(
        f"commit   {git.get('commit') or 'unknown'}{' (dirty)' if git.get('dirty') else ''}"
    )
    for name, d in (lineage.get("datasets") or {}).items():
        stdout.print(f"dataset  {name}@{d.get('version')} sha256 {d.get('sha256')}")
    parity = package.manifest.get("parity")
    if parity:
        stdout.print(
            f"parity   labels {parity['label_agreement']:.2%} on {parity['rows']} rows, "
            f"max probability diff {parity['max_probability_diff']:.2g}"
        )
    sig = package.signature
    table = Table("feature", "type", "nullable", "categories")
    for f in sig.features:
        table.add_row(
            f.name,
            f.type,
            "yes" if f.nullable else "no",
            ", ".join(f.categories) if f.categories else "",
        )
    stdout.print(table)
    if sig.classes:
        stdout.print(f"classes  {', '.join(map(str, sig.classes))}")
    files = Table("file", "size", "sha256")
    for name, digest in sorted(package.manifest["files"].items()):
        files.add_row(name, human_bytes((package.path / name).stat().st_size), digest[:16] + "…")
    stdout.print(files)


def _print_version(registry: Registry, info: Any) -> None:
    """The registry's record of a version: aliases, run and metrics, source, image, tests,
    a forced promotion."""
    stdout.print(
        f"[bold]{info.name}/{info.version}[/]  aliases: {', '.join(info.aliases) or '-'}"
        f"  created {_when(info.created)}"
    )
    stdout.print(f"run      {info.run_id}")
    if info.run_id:
        metrics = registry.tracker.get_run(info.run_id).data.metrics
        if metrics:
            stdout.print(
                "metrics  " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
            )
    stdout.print(f"source   {info.source}")
    if info.tags.get("shipml.image_digest"):  # recorded by `shipml build serve`
        stdout.print(
            f"image    {info.tags.get('shipml.image', '')} {info.tags['shipml.image_digest']}",
            soft_wrap=True,
        )
    _print_tests(info.tags)
    if info.tags.get("shipml.promotion.forced") == "true":
        stdout.print(
            f"[yellow]forced promotion[/] by {info.tags.get('shipml.promotion.by')} at "
            f"{info.tags.get('shipml.promotion.time')}: "
            f"{escape(info.tags.get('shipml.promotion.reason', ''))}"
        )


def _print_tests(tags: dict[str, str]) -> None:
    from shipml.testing.runner import version_results

    results = version_results(tags)
    if results is None:
        stdout.print("tests    never tested (`shipml test` attaches results here)")
        return
    color = "green" if results["status"] == "passed" else "red"
    suites = ", ".join(f"{k} {v}" for k, v in results["suites"].items())
    stdout.print(
        f"tests    [{color}]{results['status']}[/] ({results['summary']}) at {results['time']}"
    )
    stdout.print(f"         suites: {suites}")
    for uri in results["files"]:
        stdout.print(f"         {escape(uri)}")


@app.command("import")
def import_(
    onnx_file: Path = typer.Argument(..., metavar="MODEL.onnx", help="The exported graph."),
    signature: Path = typer.Option(
        ..., "--signature", help="signature.json: features, task, classes, outputs."
    ),
    validation: Path = typer.Option(
        ..., "--validation", help="Held-out rows (Parquet): one column per feature."
    ),
    labels: str | None = typer.Option(
        None, "--labels", help="The column of the validation rows that holds the labels."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name (default: [model] name)."),
    alias: str | None = typer.Option(
        None, "--alias", help="Point this alias (e.g. challenger) at the new version."
    ),
) -> None:
    """Package an ONNX graph exported elsewhere (torch.onnx.export, tf2onnx...): the
    signature is checked against the graph, the validation rows scored and kept as the
    hold-out, the package registered (test, serve and promote it like any other)."""
    from shipml.project.importing import import_model

    done = import_model(
        project_config(), onnx_file, signature, validation, labels=labels, name=name, alias=alias
    )
    report = done.package.manifest["validation"]
    quality = f", accuracy {report['accuracy']:.4g}" if "accuracy" in report else ""
    state = "registered" if done.created else "unchanged, still"
    aliases = f" ({', '.join(done.version.aliases)})" if done.version.aliases else ""
    stdout.print(f"scored {report['rows']} validation rows{quality}")
    stdout.print(f"model: {state} {done.version.name}/{done.version.version}{aliases}")


@app.command("alias")
def alias(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Argument(..., help="Version number."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="Alias, e.g. challenger."),
    force: bool = typer.Option(False, "--force", help="Move a protected alias past its gates."),
    reason: str = typer.Option("", "--reason", help="Why (required with --force; recorded)."),
) -> None:
    r"""Point ALIAS of NAME at VERSION (e.g. make version 3 the challenger). A protected
    alias (\[gates] protect, default champion) moves only when the gates hold, as with
    `shipml promote`."""
    from shipml.cli.testing import print_gates, show_promotion
    from shipml.project.promotion import set_alias

    try:
        done = set_alias(project_config(), name, version, alias_name, force=force, reason=reason)
    except GateFailed as exc:
        print_gates(exc.details.get("gates", []))
        raise
    if done.promotion is not None:
        show_promotion(done.promotion)
        return
    if done.ignored_override:
        stderr.print(
            f"note: {alias_name!r} is not a protected alias; --force/--reason do "
            "nothing here ([gates] protect)"
        )
    stdout.print(f"{name}@{alias_name} → version {done.version}")
