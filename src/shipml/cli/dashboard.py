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
    One self-contained page, refreshed every 30 s (JSON at /api/overview).

    On an interface other machines reach (not 127.0.0.1), every page needs a token: a
    new one each start, printed in the address, or SHIPML_DASHBOARD_TOKEN."""
    import os

    import uvicorn

    from shipml.project.dashboard import gatherer
    from shipml.report.dashboard import Dashboard, token_for

    config = project_config()
    token, made = token_for(host, os.environ.get("SHIPML_DASHBOARD_TOKEN"))
    stderr.print(f"reading the registry and the audit log of [bold]{config.project.name}[/] ...")
    gather = gatherer(config)
    gather()  # MLflow imported and read, the audit log verified whole, before any visitor
    address = f"http://{host}:{port}/" + (f"?token={token}" if made else "")
    needs = " (token: SHIPML_DASHBOARD_TOKEN)" if token and not made else ""
    stderr.print(
        f"dashboard of [bold]{config.project.name}[/] on {address}{needs} (Ctrl-C stops it)",
        soft_wrap=True,
    )
    app = Dashboard(gather, token, allowed_hosts=config.http.allowed_hosts)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command()(dashboard)
