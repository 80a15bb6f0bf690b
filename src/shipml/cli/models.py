"""``shipml models``: the registry (versions, aliases, packages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from shipml.cli.output import JSON_HELP, human_bytes, print_json, project_config, stderr, stdout
from shipml.errors import GateFailed, RegistryError

app = typer.Typer(
    help="Registered models: versions, aliases (champion, challenger), packages.",
    no_args_is_help=True,
)


@app.command("ls")
def ls(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List registered models, their versions and aliases."""
    from shipml.project.models import list_models

    models = list_models(project_config())
    if as_json:
        print_json(models)
        return
    if not models:
        stdout.print("no registered models yet; `shipml run` registers one")
        return
    table = Table("model", "versions", "latest", "aliases")
    for m in models:
        aliases = ", ".join(f"{a} → v{v}" for a, v in m["aliases"].items())
        table.add_row(m["name"], str(m["versions"]), m["latest"] or "-", aliases)
    stdout.print(table)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION, NAME, or a folder."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a model version (or all versions of NAME): lineage, metrics and package files."""
    from shipml.project.models import describe_model
    from shipml.tracking import parse_model_ref

    folder = ("@" in ref or "/" in ref or ref.startswith(".")) and parse_model_ref(ref).path
    shown = describe_model(None if folder else project_config(), ref)
    if as_json:
        print_json(shown)
        return
    if "versions" in shown:
        table = Table("version", "aliases", "created", "run", "onnx sha256")
        for v in shown["versions"]:
            created = v["created"].replace("T", " ").removesuffix("+00:00") or "-"
            table.add_row(
                v["version"],
                ", ".join(v["aliases"]),
                created,
                v["run_id"] or "-",
                v["onnx_sha256"][:16],
            )
        stdout.print(f"[bold]{ref}[/]")
        stdout.print(table)
        return
    package = shown["package"]
    if shown["version"] is None:
        stdout.print(f"[bold]package[/] {package['path']}", soft_wrap=True)
    else:
        _print_version(shown["version"])
    _print_package(package)


def _print_package(package: dict[str, Any]) -> None:
    lineage = package["lineage"]
    git = lineage.get("git") or {}
    stdout.print(f"format   {package['format']}  (onnx sha256 {package['onnx_sha256'] or '-'})")
    stdout.print(
        f"commit   {git.get('commit') or 'unknown'}{' (dirty)' if git.get('dirty') else ''}"
    )
    for name, d in (lineage.get("datasets") or {}).items():
        stdout.print(f"dataset  {name}@{d.get('version')} sha256 {d.get('sha256')}", soft_wrap=True)
    parity = package["parity"]
    if parity:
        stdout.print(
            f"parity   labels {parity['label_agreement']:.2%} on {parity['rows']} rows, "
            f"max probability diff {parity['max_probability_diff']:.2g}"
        )
    sig = package["signature"]
    table = Table("feature", "type", "nullable", "categories")
    for f in sig["features"]:
        cats = ", ".join(map(str, f["categories"])) if f.get("categories") else ""
        table.add_row(f["name"], f["type"], "yes" if f["nullable"] else "no", cats)
    stdout.print(table)
    if sig.get("classes"):
        stdout.print(f"classes  {', '.join(map(str, sig['classes']))}")
    files = Table("file", "size", "sha256")
    for name, f in package["files"].items():
        files.add_row(name, human_bytes(f["bytes"]), f["sha256"][:16] + "…")
    stdout.print(files)
    stdout.print("(full digests: shipml models show REF --json)")


def _print_version(info: dict[str, Any]) -> None:
    """The registry's record of a version: aliases, run and metrics, source, image, tests,
    a forced promotion."""
    created = info["created"].replace("T", " ").removesuffix("+00:00") or "-"
    stdout.print(
        f"[bold]{info['ref']}[/]  aliases: {', '.join(info['aliases']) or '-'}  created {created}"
    )
    stdout.print(f"run      {info['run_id']}")
    metrics = info["metrics"]
    if metrics:
        stdout.print("metrics  " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    stdout.print(f"source   {info['source']}", soft_wrap=True)
    if info["image_digest"]:  # recorded by `shipml build serve`
        stdout.print(f"image    {info['image']} {info['image_digest']}", soft_wrap=True)
    _print_tests(info["tests"])
    forced = info["forced_promotion"]
    if forced:
        stdout.print(
            f"[yellow]forced promotion[/] by {forced['by']} at {forced['time']}: "
            f"{escape(forced['reason'])}"
        )


def _print_tests(results: dict[str, Any] | None) -> None:
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
    name: str | None = typer.Option(None, "--name", help="Model name (default: \\[model] name)."),
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


def _alias_arguments(given: list[str]) -> tuple[str, str, str]:
    """(name, version, alias) from NAME/VERSION ALIAS, or NAME VERSION ALIAS."""
    if len(given) == 3:
        return given[0], given[1], given[2]
    name, slash, version = given[0].rpartition("/")
    if len(given) != 2 or not slash or not name or not version:
        raise RegistryError(
            f"models alias takes NAME/VERSION ALIAS, got {' '.join(given)!r}",
            hint="for example `shipml models alias penguins/3 challenger`",
        )
    return name, version, given[1]


@app.command("alias")
def alias(
    given: list[str] = typer.Argument(
        ..., metavar="NAME/VERSION ALIAS", help="The version and the alias: penguins/3 challenger."
    ),
    force: bool = typer.Option(False, "--force", help="Move a protected alias past its gates."),
    reason: str = typer.Option("", "--reason", help="Why (required with --force; recorded)."),
) -> None:
    r"""Point ALIAS at a version (e.g. `shipml models alias penguins/3 challenger`; the
    older form NAME VERSION ALIAS works too). A protected alias (\[gates] protect, default
    champion) moves only when the gates hold, as with `shipml promote`."""
    from shipml.cli.testing import print_gates, show_promotion
    from shipml.project.promotion import set_alias

    name, version, alias_name = _alias_arguments(given)
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
