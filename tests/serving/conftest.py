"""A real SQLite database file per test, migrated with Alembic.

The migrations run once per session into a template file; each test gets a fresh copy,
so every test starts from the newest schema and empty tables without paying for the
migration again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from serving.storage.db import make_engine, migrate, session_factory


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head (the engine is disposed, so no WAL file is left)."""
    path = tmp_path_factory.mktemp("db-template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_url(tmp_path: Path, migrated_template: Path) -> str:
    """URL of this test's own migrated, empty SQLite file."""
    path = tmp_path / "baoxue.db"
    shutil.copyfile(migrated_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on this test's database, with the service's SQLite settings."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_sessions(db_engine: Engine) -> sessionmaker[Session]:
    """The session factory the service would use."""
    return session_factory(db_engine)


@pytest.fixture
def db_session(db_sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session; tests commit or roll back themselves."""
    with db_sessions() as session:
        yield session
