"""Engine, sessions and migrations for the service database.

The URL decides everything: `sqlite:///var/baoxue.db` for one county on one machine,
`postgresql+psycopg://...` for a bigger install. The SQLite-only settings (WAL journal,
foreign keys, busy timeout, connections shared across threads) live here and nowhere
else, so the rest of the code is the same on both.

Transactions belong to the caller: query functions flush, the caller commits, usually as
`with sessions.begin() as session: ...`; a job that needs one transaction on its own
engine writes `with session_scope(settings) as session: ...`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:
    from serving.settings import Settings

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 10.0


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _sqlite_in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:")


def _sqlite_pragmas(busy_timeout_s: float) -> Any:
    def set_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
        """Each new SQLite connection: foreign keys on, WAL journal, wait for locks."""
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            if _journal_mode(cursor) != "wal":  # a read-only file cannot switch; keep it
                cursor.execute("PRAGMA journal_mode=WAL")  # in-memory answers "memory"
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL, faster
        finally:
            cursor.close()

    return set_pragmas


def _journal_mode(cursor: Any) -> str:
    row = cursor.execute("PRAGMA journal_mode").fetchone()
    return str(row[0]).lower() if row else ""


def _busy_timeout(url: URL) -> float:
    """Seconds to wait for another writer: the URL's `?timeout=` or the default."""
    value = url.query.get("timeout")
    if isinstance(value, tuple):
        value = value[-1]
    try:
        return float(value) if value is not None else SQLITE_BUSY_TIMEOUT_S
    except ValueError as error:
        raise ValueError(f"the database URL's timeout must be seconds, not {value!r}") from error


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for `url`, with the SQLite settings the service needs when it is SQLite.

    A SQLite URL may say how long to wait for another writer before giving up
    (`sqlite:///var/baoxue.db?timeout=30`, seconds; default 10). In-memory SQLite
    (`sqlite://`) gets a `StaticPool`, so every session of the engine
    sees the same database (tests). Other URLs get the dialect's defaults and
    `pool_pre_ping`, so a restarted PostgreSQL does not break the first request.
    """
    parsed = make_url(url)
    if not _is_sqlite(parsed):
        return create_engine(parsed, echo=echo, pool_pre_ping=True)
    timeout = _busy_timeout(parsed)
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": timeout},
        "echo": echo,
    }
    if _sqlite_in_memory(parsed):
        kwargs["poolclass"] = StaticPool
    engine = create_engine(parsed.difference_update_query(["timeout"]), **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas(timeout))
    return engine


WROTE = "baoxue.wrote"


def _mark_flush(session: Session, _context: Any) -> None:
    session.info[WROTE] = True


def _mark_statement(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[WROTE] = True


def _forget_writes(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(WROTE, None)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`; objects stay readable after commit.

    Each session remembers whether its current transaction has written (`has_written`),
    so code that would wait on another connection's write (the audit writer) can tell
    whether this transaction may itself hold the database's write lock.
    """
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    event.listen(sessions, "after_flush", _mark_flush)
    event.listen(sessions, "do_orm_execute", _mark_statement)
    event.listen(sessions, "after_transaction_end", _forget_writes)
    return sessions


def has_written(session: Session) -> bool:
    """Whether `session`'s transaction has written (or has changes waiting to flush)."""
    return bool(session.info.get(WROTE) or session.new or session.dirty or session.deleted)


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
        database = parsed.database or ""
        if database.startswith("file:"):  # a URI filename (`?uri=true`), e.g. mode=ro
            database = database.removeprefix("file:")
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    migrate(parsed)


@contextmanager
def session_scope(settings: Settings, *, init: bool = True) -> Iterator[Session]:
    """One transaction on the service database, on an engine of its own (a job's or a
    command's): the database migrated first (`init_db`; `init=False` skips it for one
    a job has just migrated), the session committed when the block ends, rolled back when
    it raises, and the engine disposed either way."""
    if init:
        init_db(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


def database_problem(error: BaseException) -> str:
    """A sentence for a database that cannot be used right now (locked, read-only, full,
    unreachable), from the driver's own short message only: never the SQL statement or
    its parameters, which may carry a student's data."""
    orig = getattr(error, "orig", None) or error
    detail = str(orig.args[0]) if getattr(orig, "args", None) else type(orig).__name__
    lowered = detail.lower()
    if "locked" in lowered or "busy" in lowered:
        return (
            "The database is busy: another job (probably the weekly batch) is writing to it. "
            "Please try again in a minute."
        )
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        return (
            "The database cannot be written: its file or folder is read-only. "
            "Ask the administrator to check the permissions of the database file."
        )
    if "full" in lowered or "disk i/o" in lowered or "no space" in lowered:
        return (
            "The database cannot be written: the disk is full or failing. "
            "Ask the administrator to free space; nothing was saved."
        )
    return f"The database cannot be reached right now ({detail[:200]}). Please try again later."
