"""Where `shipml tune` keeps its Optuna study: next to the MLflow store.

With MLflow on PostgreSQL the study goes into the same database, in its own schema
``optuna`` (both keep an ``alembic_version`` table, so they cannot share a schema).
With MLflow on SQLite it is ``optuna.db`` beside the MLflow file, for the same reason.
Anything else (an MLflow server over HTTP) keeps it in ``.shipml/optuna.db``, unless
``[tune] storage`` names one: workers on other machines need a shared PostgreSQL.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from shipml.config import ProjectConfig
from shipml.errors import TuneError

SCHEMA = "optuna"
SQLITE = "sqlite:///"
# A trial whose process stopped beating for this long (killed, crashed) is marked failed
# by the next process that asks for a trial.
HEARTBEAT_S = 5
GRACE_S = 20


def storage_url(config: ProjectConfig) -> str:
    if config.tune.storage:
        return config.tune.storage
    uri = config.tracking_uri
    if uri.startswith(SQLITE) and uri != SQLITE + ":memory:":
        return SQLITE + str(Path(uri[len(SQLITE) :]).with_name("optuna.db"))
    if _is_postgres(uri):
        return uri
    return SQLITE + str(config.path(".shipml/optuna.db"))


def _is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and records."""
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(url).render_as_string(hide_password=True))
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def open_storage(url: str) -> Any:
    """Optuna's RDB storage on ``url`` (its schema created in PostgreSQL), with heartbeats."""
    import optuna
    import sqlalchemy

    kwargs: dict[str, Any] = {}
    try:
        if _is_postgres(url):
            engine = sqlalchemy.create_engine(url)
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            engine.dispose()
            kwargs["connect_args"] = {"options": f"-csearch_path={SCHEMA}"}
        elif url.startswith(SQLITE):
            Path(url[len(SQLITE) :]).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60}
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 4 and 5
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
    except Exception as exc:  # SQLAlchemy and Optuna raise many kinds
        hint = "check [tune] storage (or [tracking] uri, which it follows by default)"
        orig = getattr(exc, "orig", None)
        if url.startswith(SQLITE) and type(orig).__name__ == "DatabaseError":
            # "file is not a database", "database disk image is malformed": not a setting
            hint = (
                f"the file {url[len(SQLITE) :]} is damaged; restore it from a backup, or move "
                "it aside (it holds the study's trials) and `shipml tune` starts a new study"
            )
        raise TuneError(
            f"cannot open the study storage {redact(url)}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}",
            hint=hint,
        ) from exc
