"""``shipml audit``: verify the log, show its key, explain a prediction, export it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich.markup import escape

from shipml.cli.output import JSON_HELP, print_json, project_config, stdout, told
from shipml.errors import AuditError

app = typer.Typer(
    help="The tamper-evident audit log of predictions and lifecycle events.", no_args_is_help=True
)


@app.command("verify")
def verify_cmd(
    key: Path | None = typer.Option(
        None, "--key", help="Trust this key (a PEM file) instead of the pin in shipml.toml."
    ),
    fingerprint: str = typer.Option(
        "", "--fingerprint", help="Trust the key with this fingerprint (sha256:...)."
    ),
    head: list[Path] = typer.Option(
        [], "--head", help="A signed head published earlier (JSON); the log must extend it."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check every record, checkpoint and signature against the pinned key.

    Exit 0: intact (records after the newest checkpoint are reported as the unsigned
    tail). Exit 10: tampered, damaged, not an audit log, or no pinned key."""
    from shipml.audit import verify_project
    from shipml.audit.database import redact

    config = project_config()
    result = verify_project(config, key=key, fingerprint=fingerprint, heads=head)
    if as_json:  # the verdict on stdout, whatever it is; a failure still exits 10
        print_json(dataclasses.asdict(result))
    for note in [] if as_json else result.notes:
        stdout.print(f"note: {escape(note)}", soft_wrap=True)
    if not result.ok:
        raise AuditError(
            f"audit log {redact(config.audit.path)} failed verification: {result.problem}",
            hint="keep this log as evidence and restore it from a backup"
            + (f"; the records before {result.first_bad} are intact" if result.first_bad else ""),
        )
    if as_json:
        return
    stdout.print(
        f"[green]verified[/] {result.records} records against {result.checkpoints} signed "
        f"checkpoint(s) of key {result.key}"
        + (f"; {result.unsigned} record(s) not yet signed" if result.unsigned else ""),
        soft_wrap=True,
    )


@app.command("key")
def key_cmd(
    pin: bool = typer.Option(
        False, "--pin", help="Pin the current key's fingerprint in shipml.toml (check it first)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show the signing key's fingerprint and the one pinned in shipml.toml."""
    from shipml.audit import key_fingerprint, pin_key

    config = project_config()
    path = config.path(config.audit.signing_key)
    if pin:
        stdout.print(f"pinned {pin_key(config)} in shipml.toml ([audit] key_fingerprint)")
        return
    found = key_fingerprint(path) if path.is_file() else None
    if as_json:
        pinned_json = config.audit.key_fingerprint or None
        print_json({"signing_key": str(path), "fingerprint": found, "pinned": pinned_json})
    current = found or "none yet (made by the first writer)"
    pinned = config.audit.key_fingerprint or "nothing pinned"
    if not as_json:
        stdout.print(
            f"signing key  {path}\nfingerprint  {current}\npinned       {pinned}", soft_wrap=True
        )
    if config.audit.key_fingerprint and path.is_file() and current != pinned:
        raise AuditError(
            f"the signing key {path} is not the pinned key",
            hint="restore the pinned key; writers refuse to sign with another one",
        )


@app.command("checkpoint")
def checkpoint_cmd() -> None:
    """Sign a checkpoint (size, Merkle root, time) of the log now."""
    from shipml.audit import open_log

    log = open_log(project_config())
    try:
        cp = log.checkpoint()
    finally:
        log.close()
    stdout.print(f"checkpoint: {cp.size} records, root {cp.root}")


@app.command("explain")
def explain_cmd(
    request_id: str = typer.Argument(..., metavar="REQUEST_ID"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The lineage of one prediction: model, run, datasets, commit, image, tests."""
    from shipml.lineage import explain

    links = explain(project_config(), request_id)
    if as_json:  # every link: its kind, its sentence and what it holds
        print_json([dataclasses.asdict(link) for link in links])
        return
    for link in links:
        # The summary holds the client's text (request id, variant): printed, never styled.
        stdout.print(f"[bold]{link.kind:<14}[/] {escape(link.summary)}", soft_wrap=True)


@app.command("export")
def export_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="A .jsonl or .parquet file."),
) -> None:
    """Every record, for analytics (JSON Lines, or Parquet with nested values as JSON),
    streamed; each record is checked against its hash on the way."""
    from shipml.audit import export

    count = export(project_config(), output)
    told(output).print(f"exported {count} records → {output}")
