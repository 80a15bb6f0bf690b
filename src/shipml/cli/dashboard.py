"""``shipml dashboard``: a web page of how every model is doing."""

from __future__ import annotations

import typer

from shipml.cli.output import project_config, stderr


def dashboard(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8050, min=0, max=65535, help="Port of the dashboard."),
) -> None:
    """Serve the project's dashboard: models, versions and aliases with their lineage,
    tests and gates; the gateway's rollout; drift per feature and quality over time from
    the latest `shipml monitor`; recent predictions and whether the audit log verifies.
    One self-contained page, refreshed every 30 s (JSON at /api/overview)."""
    import uvicorn

    from shipml.project.dashboard import gatherer
    from shipml.report.dashboard import Dashboard

    config = project_config()
    stderr.print(f"reading the registry and the audit log of [bold]{config.project.name}[/] ...")
    gather = gatherer(config)
    gather()  # MLflow imported and read, the audit log verified whole, before any visitor
    stderr.print(
        f"dashboard of [bold]{config.project.name}[/] on http://{host}:{port} (Ctrl-C stops it)"
    )
    uvicorn.run(Dashboard(gather), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command()(dashboard)
