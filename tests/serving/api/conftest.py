"""The API over HTTP: `TestClient` against `create_app(Settings(...))` with a real migrated
database, real users with argon2 hashes, and stored weekly scores.

Users and hand-made scores are written once per session into a template database; each
test copies it, so every test starts from the same records without re-hashing passwords.
Tests using `settings` (or `client`) run on SQLite and, when `BAOXUE_TEST_POSTGRES_URL`
is set, again on PostgreSQL (`db_backend`, `tests/serving/conftest.py`).
Every log record of the package's tests (all loggers, DEBUG) is collected, and
`test_zz_logs.py` checks that none names a student or a note.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from serving.app import create_app
from serving.audit import AccessRow, recent_access
from serving.auth import Viewer, create_access_token
from serving.services.users import add_user, get_viewer
from serving.settings import (
    DatabaseSettings,
    MlflowSettings,
    PathSettings,
    ServingSettings,
    Settings,
)
from serving.storage import queries
from serving.storage.db import make_engine, migrate, session_factory
from tests.serving.conftest import BACKENDS, PostgresDatabases

SECRET = "test-secret-key-for-the-api-tests-0123456789"
PASSWORD = "correct horse battery"
NOTE = "NOTE-SECRET grandmother ill, father away in Guangdong"
COMMENT = "COMMENT-SECRET the family moved back"
AS_OFS = (dt.date(2024, 3, 4), dt.date(2024, 3, 11))

# student -> (school, class, grade)
STUDENTS = {
    "STU-A1": ("SCH-A", "SCH-A-C1", 7),
    "STU-A2": ("SCH-A", "SCH-A-C2", 8),
    "STU-B1": ("SCH-B", "SCH-B-C1", 7),
}
# username -> (role, school, classes)
USERS = {
    "county": ("county_admin", None, ()),
    "admin_a": ("school_admin", "SCH-A", ()),
    "teacher_a1": ("teacher", "SCH-A", ("SCH-A-C1",)),
    "admin_b": ("school_admin", "SCH-B", ()),
    "researcher": ("researcher", None, ()),
}


# Test students' ids (hand-made and synthetic), the note and the comment.
PERSONAL = re.compile(r"STU-[AB]\d|\bS\d{6}\b|NOTE-SECRET|COMMENT-SECRET")
# The test's own HTTP client logs request URLs; in production that client is a browser.
CLIENT_LOGGERS = frozenset({"httpx", "httpcore"})


class LogCollector(logging.Handler):
    """Keeps every record (formatted) emitted while the API tests run."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record still counts
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            text += " " + logging.Formatter().formatException(record.exc_info)
        self.lines.append((record.name, text))


@pytest.fixture(scope="package", autouse=True)
def api_logs() -> Iterator[LogCollector]:
    """All log records of every logger, at DEBUG, over the whole API test package."""
    root = logging.getLogger()
    collector = LogCollector()
    old_level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    yield collector
    root.removeHandler(collector)
    root.setLevel(old_level)
    # Checked here too, so each xdist worker checks the records of its own tests.
    assert_no_personal_data(collector)


def assert_no_personal_data(collector: LogCollector) -> None:
    """No log line names a test student or carries a note or comment."""
    offending = [
        (name, text)
        for name, text in collector.lines
        if name not in CLIENT_LOGGERS and PERSONAL.search(text)
    ]
    assert not offending, f"{len(offending)} log line(s) carry personal data: {offending[:3]}"


@dataclass(frozen=True)
class Template:
    path: Path
    viewers: dict[str, Viewer]


def seed_scores(session: Session) -> None:
    """Two weeks of hand-made scores for the three students."""
    for week, as_of in enumerate(AS_OFS):
        run = queries.start_run(session, as_of=as_of, model_version="7")
        rows = [
            queries.WeeklyScoreIn(
                student_id=student_id,
                school_id=school_id,
                class_id=class_id,
                grade_level=grade,
                risk_score=0.2 + 0.1 * i + 0.05 * week,
                margin=-1.0 + i,
                rank_in_school=1 + i % 2,
                tier="high" if i == 0 else "medium",
                escalation_level=2 if (i == 0 and week == 1) else 0,
                reasons=(
                    queries.Reason(
                        group="attendance",
                        reason_code="ABSENCE_RECENT",
                        feature="unexcused_30d",
                        value=6,
                        contribution=0.8,
                    ),
                ),
            )
            for i, (student_id, (school_id, class_id, grade)) in enumerate(STUDENTS.items())
        ]
        queries.save_weekly_scores(session, run.id, rows)
        queries.finish_run(session, run.id)


def fill_api_database(url: str) -> dict[str, Viewer]:
    """Migrate the database at `url` and write the users, scores and one noted visit."""
    migrate(url)
    engine = make_engine(url)
    viewers: dict[str, Viewer] = {}
    try:
        with session_factory(engine).begin() as session:
            for username, (role, school_id, class_ids) in USERS.items():
                row = add_user(session, username, PASSWORD, role, school_id, class_ids)
                viewers[username] = get_viewer(session, row.id)
            seed_scores(session)
            queries.add_intervention(
                session,
                queries.InterventionIn(
                    student_id="STU-A1",
                    school_id="SCH-A",
                    class_id="SCH-A-C1",
                    date=dt.date(2024, 3, 5),
                    kind="home_visit",
                    by_role="homeroom_teacher",
                    outcome="contacted",
                    note=NOTE,
                ),
                recorded_by=viewers["teacher_a1"].user_id,
            )
    finally:
        engine.dispose()
    return viewers


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    """`sqlite` or `postgresql`: the API tests run on both (see `tests/serving/conftest.py`)."""
    return str(request.param)


@pytest.fixture(scope="session")
def api_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A migrated database with the users, two weeks of scores and one noted visit."""
    path = tmp_path_factory.mktemp("api-template") / "baoxue.db"
    return Template(path, fill_api_database(f"sqlite:///{path}"))


@pytest.fixture(scope="session")
def api_postgres_template(postgres: PostgresDatabases, api_template: Template) -> str:
    """The same records in a PostgreSQL database (the same user ids), cloned by each test."""
    filled: list[dict[str, Viewer]] = []
    database = postgres.template("api", lambda url: filled.append(fill_api_database(url)))
    assert filled == [api_template.viewers]
    return database


@pytest.fixture(scope="session")
def empty_mlflow(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking store URI with no registered model (shared: nothing writes to it)."""
    return f"sqlite:///{tmp_path_factory.mktemp('empty-mlflow') / 'mlflow.db'}"


def make_settings(
    home: Path,
    db_path: Path | None,
    tracking_uri: str,
    *,
    db_url: str | None = None,
    **serving: object,
) -> Settings:
    """Settings for one test: its own home folder and database, a fixed signing key."""
    return Settings(
        paths=PathSettings(home=home),
        db=DatabaseSettings(url=db_url or f"sqlite:///{db_path}"),
        mlflow=MlflowSettings(tracking_uri=tracking_uri, registry_uri=tracking_uri),
        serving=ServingSettings(secret_key=SECRET, **serving),  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(
    db_backend: str,
    tmp_path: Path,
    api_template: Template,
    empty_mlflow: str,
    request: pytest.FixtureRequest,
) -> Iterator[Settings]:
    """This test's settings: a copy of the template database on `db_backend`, no model."""
    if db_backend == "sqlite":
        db_path = tmp_path / "baoxue.db"
        shutil.copyfile(api_template.path, db_path)
        yield make_settings(tmp_path / "home", db_path, empty_mlflow)
        return
    postgres: PostgresDatabases = request.getfixturevalue("postgres")
    url = postgres.copy(request.getfixturevalue("api_postgres_template"))
    yield make_settings(tmp_path / "home", None, empty_mlflow, db_url=url)
    postgres.drop(url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A started app (lifespan run) without a model."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def viewers(api_template: Template) -> dict[str, Viewer]:
    return api_template.viewers


def bearer(viewer: Viewer, *, minutes: int = 30, now: dt.datetime | None = None) -> dict[str, str]:
    """An Authorization header with a real token for `viewer`."""
    return {"Authorization": f"Bearer {create_access_token(viewer, SECRET, minutes, now=now)}"}


@pytest.fixture
def auth(viewers: dict[str, Viewer]) -> dict[str, dict[str, str]]:
    """username -> Authorization header."""
    return {name: bearer(viewer) for name, viewer in viewers.items()}


def audit_rows(client: TestClient) -> list[AccessRow]:
    """Every audit row, oldest first."""
    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        return list(reversed(recent_access(session, limit=10_000)))
