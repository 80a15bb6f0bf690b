"""``shipml data``: dataset snapshots (where is the data)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipml.cli.output import JSON_HELP, print_json, project_config, stdout

if TYPE_CHECKING:
    from shipml.data import DatasetStore

app = typer.Typer(
    help="Dataset snapshots: full content digest, schema, profile, source.", no_args_is_help=True
)


def _store() -> DatasetStore:
    from shipml.data import DatasetStore

    config = project_config()
    return DatasetStore(config.artifact_root, config.root)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Dataset name, e.g. penguins."),
    source: str = typer.Argument(..., help="CSV or Parquet path, or a URI (file://, s3://...)."),
    description: str = typer.Option("", help="A line describing the data."),
    fmt: str | None = typer.Option(
        None, "--format", help="csv or parquet (default: from the name's ending)."
    ),
) -> None:
    """Snapshot SOURCE as a new version of NAME (unchanged content keeps the version).
    Limits on size and rows, and whether http(s) is allowed: \\[data] in shipml.toml."""
    store = _store()
    before = len(store.versions(name))
    snap = store.add(name, source, description=description, fmt=fmt)
    new = snap.version > before
    verb = "[green]added[/]" if new else "unchanged:"
    stdout.print(f"{verb} {snap.ref} · {snap.rows} rows × {snap.columns} columns")
    stdout.print(f"sha256 {snap.digest}")
    stdout.print(f"source {snap.source}")


@app.command("ls")
def ls(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List datasets with their latest version (full sha256 and source: nothing is cut)."""
    from shipml.project.datasets import list_datasets

    rows = list_datasets(project_config())
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout.print("no datasets yet; add one with `shipml data add NAME PATH`")
        return
    table = Table("name", "version", "rows", "columns", "created", "sha256")
    for r in rows:
        created = r["created"].replace("T", " ").removesuffix("+00:00")
        table.add_row(
            r["name"],
            str(r["version"]),
            str(r["rows"]),
            str(r["columns"]),
            created,
            r["sha256"][:12],
        )
    stdout.print(table)
    # Digests and paths a user copies, in full and unwrapped (the table has no room).
    for r in rows:
        ref = f"{r['name']}@{r['version']}"
        stdout.print(f"{ref}  sha256 {r['sha256']}", soft_wrap=True)
        stdout.print(f"{' ' * len(ref)}  source {escape(r['source'])}", soft_wrap=True)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a snapshot: digest, source, schema and profile."""
    from shipml.project.datasets import describe_dataset

    snap = describe_dataset(project_config(), ref)
    if as_json:
        print_json(snap)
        return
    stdout.print(f"[bold]{snap['ref']}[/]  {escape(snap['description'])}", soft_wrap=True)
    stdout.print(f"sha256   {snap['sha256']}  ({snap['digest_format']}, every row)", soft_wrap=True)
    stdout.print(f"source   {escape(snap['source'])}", soft_wrap=True)
    stdout.print(f"stored   {escape(snap['stored'])}", soft_wrap=True)
    stdout.print(f"rows     {snap['rows']}    created {snap['created']}")
    versions = snap["versions"]
    if len(versions) > 1:
        stdout.print(
            "versions " + ", ".join(f"{v['version']} ({v['sha256'][:8]})" for v in versions)
        )
    table = Table("column", "type", "nullable", "missing", "summary")
    for col in snap["schema"]:
        table.add_row(
            col["name"],
            col["type"],
            "yes" if col["nullable"] else "no",
            str(snap["profile"]["columns"][col["name"]]["missing"]),
            _summary(col, snap["profile"]["columns"][col["name"]]),
        )
    stdout.print(table)


def _summary(col: dict[str, Any], prof: dict[str, Any]) -> str:
    if col["type"] in ("int", "float") and prof.get("mean") is not None:
        return f"min {prof['min']:.4g} · mean {prof['mean']:.4g} · max {prof['max']:.4g}"
    if col.get("categories") is not None:
        return ", ".join(f"{k} ({v})" for k, v in list(prof.get("top", {}).items())[:6])
    return f"{prof.get('unique', '?')} distinct values"


@app.command("export")
def export(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    folder: Path = typer.Argument(..., help="Folder to write (replaced if it exists)."),
) -> None:
    """Write a snapshot as a data bundle: data.parquet + manifest.json with its digest."""
    from shipml.data.bundle import write_bundle

    store = _store()
    bundle = write_bundle(store, store.get(ref), folder)
    stdout.print(f"exported {bundle.ref} to {folder} · sha256 {bundle.digest}")


@app.command("verify")
def verify(
    folder: Path = typer.Argument(
        ...,
        help="A data bundle folder (/data in a data image), or NAME\\[@VERSION] of a "
        "snapshot in the store.",
    ),
    copy_to: Path | None = typer.Option(
        None,
        "--copy-to",
        help="After the check, copy the bundle here (an init container's shared volume).",
    ),
) -> None:
    """Check a data bundle: recompute the table's digest and compare it with the manifest
    (NAME\\[@VERSION], when no such folder exists: a snapshot in the store, against its
    catalog). A mismatch is an error (exit code 5); nothing is copied then."""
    from shipml.data.bundle import copy_bundle, read_bundle

    if not folder.exists() and copy_to is None and str(folder) == folder.name:
        from shipml.project.datasets import verify_dataset

        checked = verify_dataset(project_config(), str(folder))
        stdout.print(
            f"verified {checked['ref']} in the store: {checked['rows']} rows · "
            f"sha256 {checked['sha256']}",
            soft_wrap=True,
        )
        return
    bundle, df = read_bundle(folder)
    stdout.print(f"verified {bundle.ref} in {folder}: {len(df)} rows · sha256 {bundle.digest}")
    if copy_to is not None:
        copy_bundle(bundle, copy_to)
        stdout.print(f"copied to {copy_to}")
