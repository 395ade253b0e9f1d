"""The pages over HTTP: `TestClient` (fast) and a real uvicorn server driven by Chromium
(browser tests), both on `create_app(Settings(...))` with a migrated SQLite file holding
real users (argon2 hashes), four weeks of hand-made scores and one noted home visit.

The database is written once per session into a template; each test copies it. Every
log record of the package's tests is collected and checked for student ids and notes.
"""

from __future__ import annotations

import datetime as dt
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
from serving.services.users import add_user
from serving.settings import Settings
from serving.storage import queries
from serving.storage.db import make_engine, migrate, session_factory
from tests.serving.api.conftest import LogCollector, make_settings

PASSWORD = "correct horse battery"
NOTE = "NOTE-SECRET 奶奶生病，父亲在广东打工"
AS_OFS = (dt.date(2024, 2, 19), dt.date(2024, 2, 26), dt.date(2024, 3, 4), dt.date(2024, 3, 11))
LATEST = AS_OFS[-1]

R = queries.Reason
# student -> (class, grade, risk per week, escalation level in the newest week, reasons)
STUDENTS: dict[str, tuple[str, int, tuple[float, ...], int, tuple[R, ...]]] = {
    "STU-A01": (
        "SCH-A-C1",
        7,
        (0.05, 0.08, 0.12, 0.19),
        3,
        (
            R(
                group="attendance",
                reason_code="ABSENCE_STREAK",
                feature="unexcused_run",
                value=3,
                contribution=1.2,
            ),
            R(
                group="family_hardship",
                reason_code="POVERTY",
                feature="poverty_registered",
                value=1,
                contribution=0.4,
            ),
        ),
    ),
    "STU-A02": (
        "SCH-A-C1",
        7,
        (0.20, 0.22, 0.26, 0.31),
        0,
        (
            R(
                group="attendance",
                reason_code="ABSENCE_RECENT",
                feature="unexcused_30d",
                value=6,
                contribution=0.9,
            ),
            R(
                group="left_behind_guardian",
                reason_code="LEFT_BEHIND_BOTH",
                feature="left_behind_both_parents_away",
                value=1,
                contribution=0.5,
            ),
            R(
                group="grades",
                reason_code="GRADES_FALLING",
                feature="score_share_change",
                value=-0.18,
                contribution=0.3,
            ),
        ),
    ),
    "STU-A03": (
        "SCH-A-C1",
        7,
        (0.10, 0.12, 0.15, 0.16),
        0,
        (
            R(
                group="grades",
                reason_code="SUBJECTS_FAILED",
                feature="subjects_failed_latest",
                value=3,
                contribution=0.6,
            ),
        ),
    ),
    "STU-A04": (
        "SCH-A-C1",
        7,
        (0.03, 0.03, 0.04, 0.04),
        1,
        (
            R(
                group="attendance",
                reason_code="ABSENCE_STREAK",
                feature="unexcused_run",
                value=1,
                contribution=0.2,
            ),
        ),
    ),
    "STU-A05": ("SCH-A-C1", 7, (0.02, 0.02, 0.02, 0.02), 0, ()),
    "STU-A06": ("SCH-A-C1", 7, (0.01, 0.01, 0.01, 0.01), 0, ()),
    "STU-A07": (
        "SCH-A-C2",
        8,
        (0.25, 0.27, 0.28, 0.29),
        0,
        (
            R(
                group="transition_age",
                reason_code="OVER_AGE",
                feature="years_over_age",
                value=2,
                contribution=0.7,
            ),
        ),
    ),
    "STU-A08": ("SCH-A-C2", 8, (0.02, 0.02, 0.03, 0.03), 0, ()),
}
CAPACITY = 2  # high: the two riskiest of the school; medium: the next four
# username -> (role, classes, staff role)
USERS = {
    "teacher_c1": ("teacher", ("SCH-A-C1",), "homeroom_teacher"),
    "teacher_c2": ("teacher", ("SCH-A-C2",), "homeroom_teacher"),
    "principal_a": ("school_admin", (), "principal"),
    "county_admin": ("county_admin", (), "county"),
}
PERSONAL = re.compile(r"STU-A\d\d|NOTE-SECRET|HOMEVISIT-NOTE")
CLIENT_LOGGERS = frozenset({"httpx", "httpcore"})


@pytest.fixture(scope="package", autouse=True)
def page_logs() -> Iterator[LogCollector]:
    """Every log record while the page tests run; none may name a student or a note."""
    import logging

    root = logging.getLogger()
    collector = LogCollector()
    old_level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    yield collector
    root.removeHandler(collector)
    root.setLevel(old_level)
    offending = [
        (name, text)
        for name, text in collector.lines
        if name not in CLIENT_LOGGERS and PERSONAL.search(text)
    ]
    assert not offending, f"{len(offending)} log line(s) carry personal data: {offending[:3]}"


def _tiers(week: int) -> dict[str, str]:
    ordered = sorted(STUDENTS, key=lambda s: (-STUDENTS[s][2][week], s))
    return {
        s: "high" if i < CAPACITY else "medium" if i < 3 * CAPACITY else "low"
        for i, s in enumerate(ordered)
    }


def seed(session: Session) -> None:
    """Four weeks of scores; the ladder fires in the newest week only."""
    for week, as_of in enumerate(AS_OFS):
        run = queries.start_run(session, as_of=as_of, model_version="3")
        tiers = _tiers(week)
        newest = week == len(AS_OFS) - 1
        rows = [
            queries.WeeklyScoreIn(
                student_id=student_id,
                school_id="SCH-A",
                class_id=class_id,
                grade_level=grade,
                risk_score=risks[week],
                margin=-1.0,
                rank_in_school=1 + rank,
                tier=tiers[student_id],
                escalation_level=level if newest else 0,
                reasons=reasons,
            )
            for rank, (student_id, (class_id, grade, risks, level, reasons)) in enumerate(
                STUDENTS.items()
            )
        ]
        queries.save_weekly_scores(session, run.id, rows)
        queries.finish_run(session, run.id)


@dataclass(frozen=True)
class Template:
    path: Path
    user_ids: dict[str, int]


@pytest.fixture(scope="session")
def pages_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    path = tmp_path_factory.mktemp("pages-template") / "baoxue.db"
    migrate(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}")
    ids: dict[str, int] = {}
    with session_factory(engine).begin() as session:
        for username, (role, classes, staff_role) in USERS.items():
            school = None if role == "county_admin" else "SCH-A"
            ids[username] = add_user(
                session, username, PASSWORD, role, school, classes, staff_role
            ).id
        seed(session)
        queries.add_intervention(
            session,
            queries.InterventionIn(
                student_id="STU-A02",
                school_id="SCH-A",
                class_id="SCH-A-C1",
                date=dt.date(2024, 3, 5),
                kind="home_visit",
                by_role="homeroom_teacher",
                outcome="contacted",
                note=NOTE,
            ),
            recorded_by=ids["teacher_c1"],
        )
    engine.dispose()
    return Template(path, ids)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking store with no model (the pages need none)."""
    return f"sqlite:///{tmp_path_factory.mktemp('pages-mlflow') / 'mlflow.db'}"


@pytest.fixture
def settings(tmp_path: Path, pages_template: Template, empty_store: str) -> Settings:
    """This test's settings: its own copy of the template database."""
    db_path = tmp_path / "baoxue.db"
    shutil.copyfile(pages_template.path, db_path)
    return make_settings(tmp_path / "home", db_path, empty_store)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A started app (no model: the pages read stored scores only)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def audit_rows(client: TestClient) -> list[AccessRow]:
    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        return list(reversed(recent_access(session, limit=10_000)))
