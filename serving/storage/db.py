"""Engine, sessions and migrations for the service database.

The URL decides everything: `sqlite:///var/baoxue.db` for one county on one machine,
`postgresql+psycopg://...` for a bigger install. The SQLite-only settings (WAL journal,
foreign keys, busy timeout, connections shared across threads) live here and nowhere
else, so the rest of the code is the same on both.

Transactions belong to the caller: query functions flush, the caller commits, usually as
`with sessions.begin() as session: ...`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 10.0


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _sqlite_in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:")


def _set_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """Each new SQLite connection: foreign keys on, WAL journal, wait for locks."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")  # in-memory databases answer "memory"
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL, much faster
    finally:
        cursor.close()


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for `url`, with the SQLite settings the service needs when it is SQLite.

    In-memory SQLite (`sqlite://`) gets a `StaticPool`, so every session of the engine
    sees the same database (tests). Other URLs get the dialect's defaults and
    `pool_pre_ping`, so a restarted PostgreSQL does not break the first request.
    """
    parsed = make_url(url)
    if not _is_sqlite(parsed):
        return create_engine(parsed, echo=echo, pool_pre_ping=True)
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        "echo": echo,
    }
    if _sqlite_in_memory(parsed):
        kwargs["poolclass"] = StaticPool
    engine = create_engine(parsed, **kwargs)
    event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged migrations, with no ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(target: str | URL | Engine, revision: str = "head") -> None:
    """Bring the database at `target` (a URL or an engine) up to `revision`.

    The URL given here is the one migrated: `migrations/env.py` reads the connection
    handed over in `config.attributes`, never a global ini file. Passing an engine lets
    an in-memory SQLite database be migrated and then used by the same engine.
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if engine is not target:
            engine.dispose()
    logger.info("database migrated to %s (%s)", revision, engine.url.get_backend_name())


def downgrade(target: str | URL | Engine, revision: str) -> None:
    """Take the database at `target` down to `revision` (`"base"` drops every table)."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        if engine is not target:
            engine.dispose()
    logger.info("database downgraded to %s", revision)


def init_db(url: str | URL) -> None:
    """Create the folder of a SQLite file if needed, then migrate to the newest schema."""
    parsed = make_url(url)
    if _is_sqlite(parsed) and not _sqlite_in_memory(parsed):
        Path(parsed.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
    migrate(parsed)
