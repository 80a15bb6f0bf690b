"""``shipml audit``: verify the log, explain a prediction, export for analytics."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from shipml.cli.output import project_config, stdout
from shipml.errors import AuditError

app = typer.Typer(
    help="The tamper-evident audit log of predictions and lifecycle events.", no_args_is_help=True
)


@app.command("verify")
def verify_cmd() -> None:
    """Re-hash every record, follow the chain, check each signed checkpoint."""
    from shipml.audit import open_log, verify
    from shipml.audit.database import redact

    config = project_config()
    log = open_log(config, writer=False)
    try:
        result = verify(log, checkpoint_dir=config.path(config.audit.checkpoint_dir))
    finally:
        log.close()
    for note in result.notes:
        stdout.print(f"note: {note}")
    if not result.ok:
        raise AuditError(
            f"audit log {redact(config.audit.path)} failed verification: {result.problem}",
            hint="restore the log from a backup"
            + (
                "; the records before the first bad one are intact"
                if result.first_bad is not None
                else ""
            ),
        )
    stdout.print(
        f"[green]verified[/] {result.records} records against "
        f"{result.checkpoints} signed checkpoint(s)"
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
def explain_cmd(request_id: str = typer.Argument(..., metavar="REQUEST_ID")) -> None:
    """The lineage of one prediction: model, run, datasets, commit, image, tests."""
    from shipml.lineage import explain

    for link in explain(project_config(), request_id):
        stdout.print(f"[bold]{link.kind:<14}[/] {link.summary}", soft_wrap=True)


@app.command("export")
def export_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="A .jsonl or .parquet file."),
) -> None:
    """Every record, for analytics (JSON Lines, or Parquet with nested values as JSON)."""
    import orjson

    from shipml.audit import open_log

    log = open_log(project_config(), writer=False)
    try:
        rows = [orjson.loads(raw) for _, _, raw in log.entries()]
    finally:
        log.close()
    if output.is_dir():
        raise AuditError(
            f"{output} is a folder", hint="give a file name ending in .jsonl or .parquet"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = sorted({k for r in rows for k in r})
        flat = [
            {k: (json.dumps(r[k]) if isinstance(r.get(k), dict | list) else r.get(k)) for k in keys}
            for r in rows
        ]
        columns = {
            k: [
                str(v) if v is not None and not isinstance(v, str | int | float) else v
                for v in (f[k] for f in flat)
            ]
            for k in keys
        }
        pq.write_table(pa.table(columns), output)
    else:
        output.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    stdout.print(f"exported {len(rows)} records → {output}")
