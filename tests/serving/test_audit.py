"""The access log, and that nothing personal reaches the application log."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from serving.audit import purge_older_than, recent_access, record_access
from serving.auth import Viewer
from serving.services.users import add_user
from serving.storage import queries as q

T0 = dt.datetime(2024, 3, 4, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def viewers(db_sessions) -> tuple[Viewer, Viewer]:
    with db_sessions.begin() as session:
        li = add_user(session, "li.teacher", "long enough", "teacher", "A", ["A-1"])
        head = add_user(session, "head.a", "long enough", "school_admin", "A")
    return (
        Viewer(li.id, li.username, li.role, li.school_id, frozenset(li.class_ids)),
        Viewer(head.id, head.username, head.role, head.school_id),
    )


def test_each_access_is_recorded_with_who_what_and_when(db_sessions, viewers) -> None:
    li, _ = viewers
    with db_sessions.begin() as session:
        written = record_access(session, li, "S1", "GET /students/{id}", "A", at=T0)
    with db_sessions() as session:
        (row,) = recent_access(session)
    assert row == written
    assert (row.user_id, row.username, row.role) == (li.user_id, "li.teacher", "teacher")
    assert (row.student_id, row.action, row.school_id, row.at) == (
        "S1",
        "GET /students/{id}",
        "A",
        T0,
    )


def test_recent_access_filters_by_student_and_user_newest_first(db_sessions, viewers) -> None:
    li, head = viewers
    with db_sessions.begin() as session:
        for minutes, viewer, student_id in [
            (0, li, "S1"),
            (5, head, "S1"),
            (10, li, "S2"),
            (15, head, None),  # a list page, no single student
        ]:
            at = T0 + dt.timedelta(minutes=minutes)
            record_access(session, viewer, student_id, "page", "A", at=at)
    with db_sessions() as session:
        everyone = recent_access(session)
        assert [(r.username, r.student_id) for r in everyone] == [
            ("head.a", None),
            ("li.teacher", "S2"),
            ("head.a", "S1"),
            ("li.teacher", "S1"),
        ]
        assert [r.username for r in recent_access(session, student_id="S1")] == [
            "head.a",
            "li.teacher",
        ]
        assert [r.student_id for r in recent_access(session, user_id=li.user_id)] == ["S2", "S1"]
        assert len(recent_access(session, student_id="S1", user_id=li.user_id)) == 1
        assert len(recent_access(session, limit=2)) == 2
        with pytest.raises(ValueError):
            recent_access(session, limit=0)
        with pytest.raises(ValueError):
            record_access(session, li, "S1", "", "A")


def test_purge_removes_only_entries_before_the_cutoff(db_sessions, viewers) -> None:
    li, _ = viewers
    with db_sessions.begin() as session:
        for days in (0, 1, 2, 30):
            record_access(session, li, f"S{days}", "page", "A", at=T0 - dt.timedelta(days=days))
    with db_sessions.begin() as session:
        assert purge_older_than(session, (T0 - dt.timedelta(days=1)).date()) == 2
    with db_sessions() as session:
        assert sorted(r.student_id for r in recent_access(session)) == ["S0", "S1"]


def test_logs_carry_counts_and_run_ids_never_students_or_notes(
    db_sessions, viewers, caplog
) -> None:
    li, _ = viewers
    secret_note = "father in prison, mother left"
    caplog.set_level(logging.DEBUG)
    with db_sessions.begin() as session:
        run = q.start_run(session, as_of=dt.date(2024, 3, 4), model_version="v1")
    with db_sessions.begin() as session:
        q.save_weekly_scores(
            session,
            run.id,
            [
                q.WeeklyScoreIn(
                    student_id="STU-4711",
                    school_id="A",
                    class_id="A-1",
                    grade_level=8,
                    risk_score=0.9,
                    margin=2.0,
                    rank_in_school=1,
                    tier="high",
                )
            ],
        )
        q.finish_run(session, run.id)
    with db_sessions.begin() as session:
        q.add_intervention(
            session,
            q.InterventionIn(
                student_id="STU-4711",
                school_id="A",
                date=dt.date(2024, 3, 5),
                kind="home_visit",
                by_role="homeroom_teacher",
                outcome="contacted",
                note=secret_note,
            ),
            recorded_by=li.user_id,
        )
        record_access(session, li, "STU-4711", "page", "A")
        purge_older_than(session, dt.date(2020, 1, 1))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert f"score run {run.id}" in text and "stored 1 scores" in text
    assert "STU-4711" not in text and secret_note not in text and "long enough" not in text
