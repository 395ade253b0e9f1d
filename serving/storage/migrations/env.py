"""Alembic environment for the service database.

The database comes from the caller, never from a global ini file:
`serving.storage.db.migrate(url)` hands over an open connection in
`config.attributes["connection"]` (or a URL in `config.attributes["url"]`). From the
`alembic` command line, pass the URL with `-x url=sqlite:///var/baoxue.db` (with `-c`
pointing at any ini naming `script_location = serving/storage/migrations`); without one,
the URL of `serving.settings.get_settings()` is used.
"""

from __future__ import annotations

import logging

from alembic import context
from sqlalchemy import Connection

from serving.storage.db import make_engine
from serving.storage.tables import Base

logger = logging.getLogger(__name__)

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    from serving.settings import get_settings

    return get_settings().database_url


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
        literal_binds=url is not None,
        dialect_opts={"paramstyle": "named"} if url is not None else {},
    )


def run_migrations_offline() -> None:
    """Write the SQL to standard output instead of running it (`alembic upgrade --sql`)."""
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the connection handed over, or on one opened here."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as own:
            _configure(connection=own)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
