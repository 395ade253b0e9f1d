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


# -- a small export in the data folder (what the weekly batch reads) ------------------------

TERM_1 = (dt.date(2023, 9, 1), dt.date(2024, 1, 19))
TERM_2 = (dt.date(2024, 2, 19), dt.date(2024, 3, 15))
# student -> {date: status} (every other school day: present)
ABSENCES = {
    "STU-A01": {
        dt.date(2023, 10, 10): "late",
        dt.date(2023, 11, 2): "leave_sick",
        dt.date(2024, 3, 6): "absent_unexcused",
        dt.date(2024, 3, 7): "absent_unexcused",
        dt.date(2024, 3, 8): "absent_unexcused",
    },
    "STU-A02": {
        dt.date(2024, 2, 26): "absent_unexcused",
        dt.date(2024, 2, 28): "absent_unexcused",
        dt.date(2024, 3, 1): "leave_personal",
    },
    "STU-B01": {dt.date(2024, 3, 4): "absent_unexcused"},
}
# (school_year, term, exam, known on) -> share of full marks for STU-A02's maths
EXAMS = (
    (2023, 1, "midterm", dt.date(2023, 11, 15)),
    (2023, 1, "final", dt.date(2024, 1, 22)),
    (2023, 2, "monthly", dt.date(2024, 3, 1)),
)
SUBJECTS = {"chinese": 100.0, "math": 120.0, "english": 100.0}


def school_days(first: dt.date, last: dt.date) -> list[dt.date]:
    days = (first + dt.timedelta(days=i) for i in range((last - first).days + 1))
    return [d for d in days if d.weekday() < 5]


def export_frames() -> dict[str, list[dict[str, object]]]:
    """A valid export of two schools: SCH-A (the pages' students) and SCH-B."""
    pupils = {s: (c, g) for s, (c, g, *_rest) in STUDENTS.items()}
    pupils |= {"STU-B01": ("SCH-B-C1", 7), "STU-B02": ("SCH-B-C1", 7)}
    days = school_days(*TERM_1) + school_days(*TERM_2)
    flags = dict.fromkeys(
        ("poverty_registered", "dibao", "tekun", "disability", "orphan", "single_parent"),
        "false",
    )
    grades = []
    for i, student_id in enumerate(pupils):
        for e, (year, term, exam, known) in enumerate(EXAMS):
            for subject, full in SUBJECTS.items():
                share = 0.9 - 0.04 * i - (0.15 * e if student_id == "STU-A02" else 0)
                missed = student_id == "STU-A02" and subject == "english" and exam == "final"
                grades.append(
                    {
                        "student_id": student_id,
                        "school_year": year,
                        "term": term,
                        "exam": exam,
                        "subject": subject,
                        "score": "" if missed else round(full * share, 1),
                        "max_score": full,
                        "date": known.isoformat(),
                    }
                )
    return {
        "schools": [
            {
                "school_id": school,
                "name": f"{school} 中学",
                "county": "示范县",
                "township": "城关镇",
                "level": "junior",
                "rural": "true",
            }
            for school in ("SCH-A", "SCH-B")
        ],
        "calendar": [
            {"school_id": school, "date": d.isoformat()}
            for school in ("SCH-A", "SCH-B")
            for d in days
        ],
        "students": [
            {
                "student_id": s,
                "sex": "F" if i % 2 else "M",
                "birth_date": "2011-05-01",
                **flags,
                "left_behind": "none",
                "migrant_child": "false",
                "guardian": "parents",
                "boarding": "false",
            }
            for i, s in enumerate(pupils)
        ],
        "enrolments": [
            {
                "student_id": s,
                "school_year": 2023,
                "school_id": c.rsplit("-", 1)[0],
                "class_id": c,
                "grade_level": g,
            }
            for s, (c, g) in pupils.items()
        ],
        "attendance": [
            {"student_id": s, "date": d.isoformat(), "status": status}
            for s, marks in ABSENCES.items()
            for d, status in sorted(marks.items())
        ],
        "grades": grades,
        "status_events": [
            {
                "student_id": s,
                "date": "2023-09-01",
                "event": "enrol",
                "school_id": c.rsplit("-", 1)[0],
            }
            for s, (c, _g) in pupils.items()
        ],
    }


def write_export(folder: Path) -> Path:
    """Write `export_frames()` as CSV files into `folder`."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in export_frames().items():
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return folder


@pytest.fixture
def settings(tmp_path: Path, pages_template: Template, empty_store: str) -> Settings:
    """This test's settings: its own copy of the template database and of the export."""
    db_path = tmp_path / "baoxue.db"
    shutil.copyfile(pages_template.path, db_path)
    settings = make_settings(tmp_path / "home", db_path, empty_store)
    write_export(settings.paths.data)
    return settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A started app (no model: the pages read stored scores only)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def audit_rows(client: TestClient) -> list[AccessRow]:
    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        return list(reversed(recent_access(session, limit=10_000)))
