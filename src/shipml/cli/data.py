"""``shipml data``: dataset snapshots (where is the data)."""

from __future__ import annotations

import typer
from rich.table import Table

from shipml.cli.output import project_config, stdout
from shipml.data import DatasetStore

app = typer.Typer(
    help="Dataset snapshots: full content digest, schema, profile, source.", no_args_is_help=True
)


def _store() -> DatasetStore:
    config = project_config()
    return DatasetStore(config.artifact_root, config.root)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Dataset name, e.g. penguins."),
    source: str = typer.Argument(..., help="CSV or Parquet path, or a URI (file://, s3://...)."),
    description: str = typer.Option("", help="A line describing the data."),
) -> None:
    """Snapshot SOURCE as a new version of NAME (unchanged content keeps the version)."""
    store = _store()
    before = len(store.versions(name))
    snap = store.add(name, source, description=description)
    new = snap.version > before
    verb = "[green]added[/]" if new else "unchanged:"
    stdout.print(f"{verb} {snap.ref} · {snap.rows} rows × {snap.columns} columns")
    stdout.print(f"sha256 {snap.digest}")
    stdout.print(f"source {snap.source}")


@app.command("ls")
def ls() -> None:
    """List datasets with their latest version."""
    snaps = _store().latest()
    if not snaps:
        stdout.print("no datasets yet; add one with `shipml data add NAME PATH`")
        return
    table = Table("name", "version", "rows", "columns", "sha256", "created", "source")
    for s in snaps:
        table.add_row(
            s.name,
            str(s.version),
            str(s.rows),
            str(s.columns),
            s.digest[:16] + "…",
            s.created,
            s.source,
        )
    stdout.print(table)


@app.command("show")
def show(ref: str = typer.Argument(..., help="NAME or NAME@VERSION.")) -> None:
    """Show a snapshot: digest, source, schema and profile."""
    store = _store()
    snap = store.get(ref)
    stdout.print(f"[bold]{snap.ref}[/]  {snap.description}")
    stdout.print(f"sha256   {snap.digest}  ({snap.digest_format}, every row)")
    stdout.print(f"source   {snap.source}")
    stdout.print(f"stored   {store.data_uri(snap)}")
    stdout.print(f"rows     {snap.rows}    created {snap.created}")
    versions = store.versions(snap.name)
    if len(versions) > 1:
        stdout.print("versions " + ", ".join(f"{v.version} ({v.digest[:8]})" for v in versions))
    table = Table("column", "type", "nullable", "missing", "summary")
    for col in snap.schema:
        prof = snap.profile["columns"][col["name"]]
        if col["type"] in ("int", "float") and prof.get("mean") is not None:
            summary = f"min {prof['min']:.4g} · mean {prof['mean']:.4g} · max {prof['max']:.4g}"
        elif col.get("categories") is not None:
            summary = ", ".join(f"{k} ({v})" for k, v in list(prof.get("top", {}).items())[:6])
        else:
            summary = f"{prof.get('unique', '?')} distinct values"
        table.add_row(
            col["name"],
            col["type"],
            "yes" if col["nullable"] else "no",
            str(prof["missing"]),
            summary,
        )
    stdout.print(table)
