"""A real, migrated database per test: a SQLite file, and PostgreSQL when one is given.

The migrations run once per session into a template; each test gets a fresh copy (a
copied file on SQLite, `CREATE DATABASE ... TEMPLATE` on PostgreSQL), so every test
starts from the newest schema and empty tables without paying for the migration again.

`db_url` (and so `db_engine`, `db_sessions`, `db_session`) is on the backend that
`db_backend` names. Under `storage/` and `api/` that fixture is parametrized over
`BACKENDS`, so each test runs as `[sqlite]` and, when `BAOXUE_TEST_POSTGRES_URL` names a
server whose role may create databases (e.g.
`postgresql+psycopg://baoxue:baoxue@127.0.0.1:55432/baoxue`; `.ci/run` starts one), as
`[postgresql]`; without it the PostgreSQL runs are skipped with that reason. A test that
checks a SQLite-only setting pins itself with
`@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from serving.services.users import UsernameTaken, add_user
from serving.storage.db import make_engine, migrate, session_factory

POSTGRES_URL = os.environ.get("BAOXUE_TEST_POSTGRES_URL")
BACKENDS = (
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(not POSTGRES_URL, reason="BAOXUE_TEST_POSTGRES_URL is not set"),
    ),
)


class PostgresDatabases:
    """Creates and drops throwaway databases on the test server, named per process.

    `template(name, fill)` makes a database once and fills it (`fill(url)`); `copy(name)`
    clones it for one test, `drop_all()` removes every database this process made.
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.prefix = f"bx_test_{os.getpid()}"
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self.made: list[str] = []
        self.counter = itertools.count()

    def url_of(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def _create(self, database: str, template: str | None = None) -> str:
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            suffix = f' TEMPLATE "{template}"' if template else ""
            connection.execute(text(f'CREATE DATABASE "{database}"{suffix}'))
        self.made.append(database)
        return self.url_of(database)

    def template(self, name: str, fill: Callable[[str], None]) -> str:
        database = f"{self.prefix}_{name}"
        url = self._create(database)
        fill(url)
        return database

    def copy(self, template: str) -> str:
        return self._create(f"{self.prefix}_{next(self.counter)}", template)

    def _drop(self, database: str) -> bool:
        try:
            with self.admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        except DBAPIError:  # e.g. a server process this role may not end; retried at exit
            return False
        self.made.remove(database)
        return True

    def drop(self, url: str) -> None:
        database = make_url(url).database
        if database in self.made:
            self._drop(database)

    def drop_all(self) -> None:
        left = [database for database in reversed(self.made) if not self._drop(database)]
        if left:
            warnings.warn(f"could not drop test databases {left}", stacklevel=1)
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    """The PostgreSQL test server (skipped when none is given)."""
    if not POSTGRES_URL:
        pytest.skip("BAOXUE_TEST_POSTGRES_URL is not set")
    databases = PostgresDatabases(POSTGRES_URL)
    yield databases
    databases.drop_all()


@pytest.fixture
def db_backend() -> str:
    """Which database a test uses: SQLite here; `storage/` and `api/` run on both.

    Their conftests override this fixture with `params=BACKENDS`; the services' tests
    stay on SQLite to keep the suite short (they pass on PostgreSQL too).
    """
    return "sqlite"


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head (the engine is disposed, so no WAL file is left)."""
    path = tmp_path_factory.mktemp("db-template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def migrated_postgres_template(postgres: PostgresDatabases) -> str:
    """A PostgreSQL database migrated to head, cloned by each test."""
    return postgres.template("migrated", migrate)


@pytest.fixture
def db_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of this test's own migrated, empty database on `db_backend`."""
    if db_backend == "sqlite":
        path = tmp_path / "baoxue.db"
        shutil.copyfile(request.getfixturevalue("migrated_template"), path)
        yield f"sqlite:///{path}"
        return
    postgres: PostgresDatabases = request.getfixturevalue("postgres")
    url = postgres.copy(request.getfixturevalue("migrated_postgres_template"))
    yield url
    postgres.drop(url)


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on this test's database, with the service's settings for its dialect."""
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


def staff_headers(client: TestClient, username: str = "health.staff") -> dict[str, str]:
    """A bearer token of a county admin added to `client`'s database: `/health` gives its
    details (database, model version and source) to logged-in staff only."""
    password = "health-staff-password"
    try:
        with client.app.state.sessions.begin() as session:  # type: ignore[attr-defined]
            add_user(session, username, password, "county_admin")
    except UsernameTaken:  # a second app on the same database
        pass
    answer = client.post("/v1/auth/token", data={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}
