"""``shipml server start``: a team's MLflow tracking server (docs/team.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from shipml.cli.output import state, stderr
from shipml.errors import ConfigError

app = typer.Typer(
    help="A team's tracking server: MLflow on PostgreSQL and S3.", no_args_is_help=True
)


@app.command("start")
def start(
    host: str | None = typer.Option(None, help="Interface (default \\[server] host, 127.0.0.1)."),
    port: int | None = typer.Option(
        None, min=0, max=65535, help="Port (default \\[server] port, 5000)."
    ),
    backend_uri: str | None = typer.Option(
        None,
        help="Database: postgresql://USER@HOST:5432/DB, password in PGPASSWORD "
        "(default \\[server] backend_uri; empty: SQLite under .shipml/server).",
    ),
    artifacts: str | None = typer.Option(
        None, help="s3://BUCKET/PREFIX for artifacts (default \\[server] artifacts)."
    ),
) -> None:
    """Run MLflow's tracking server for a team: runs and the registry in the database,
    artifacts in the object store (keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    endpoint from AWS_ENDPOINT_URL). Projects point \\[tracking] uri at its URL.
    Works inside a project (its \\[server] settings) or anywhere else."""
    from shipml.config import find_root, load_config
    from shipml.processes import run_in_foreground
    from shipml.tracking.server import plan_server, server_environ

    try:
        root = find_root(Path(state.project).resolve() if state.project else None)
        config = load_config(root)
        settings, where = config.server, config.root
    except ConfigError:
        if state.project:
            raise
        where = Path.cwd()  # outside a project: the SHIPML_SERVER_* variables still apply
        settings = load_config(where).server
    if backend_uri is not None:
        settings = settings.model_copy(update={"backend_uri": backend_uri})
    if artifacts is not None:
        settings = settings.model_copy(update={"artifacts": artifacts})
    plan = plan_server(settings, where, host=host, port=port)
    stderr.print(
        f"MLflow tracking server on {plan.url} · store {plan.backend} · artifacts "
        f"{plan.artifacts}; Ctrl-C stops it",
        soft_wrap=True,
    )
    env = server_environ(plan.env)
    try:
        code = run_in_foreground(plan.argv, env=env)
    except OSError as exc:
        raise ConfigError(f"cannot start the MLflow server: {exc}") from exc
    raise typer.Exit(code)
