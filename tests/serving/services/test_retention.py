"""Retention: notes, comments and audit rows older than `retention.years` go; the rest,
and the facts of each visit, stay. Real SQLite, and `baoxue retention purge` in process."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from serving.audit import recent_access, record_access
from serving.cli import app
from serving.services.retention import cutoff_for, purge
from serving.services.users import add_user, get_viewer
from serving.settings import RetentionSettings, Settings, get_settings
from serving.storage import queries as q
from serving.storage.db import init_db, make_engine, session_factory
from serving.storage.tables import Feedback, Intervention

TODAY = dt.date(2026, 11, 23)
OLD = dt.date(2023, 11, 1)  # more than three years before TODAY
RECENT = dt.date(2024, 1, 10)


def _visit(day: dt.date, note: str) -> q.InterventionIn:
    return q.InterventionIn(
        student_id="S000001",
        school_id="A",
        class_id="A-1",
        date=day,
        kind="home_visit",
        by_role="homeroom_teacher",
        outcome="contacted",
        note=note,
    )


def _at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)


def seed(sessions) -> int:
    with sessions.begin() as session:
        user = add_user(session, "li.teacher", "long enough pw", "teacher", "A", ["A-1"])
        viewer = get_viewer(session, user.id)
        q.add_intervention(session, _visit(OLD, "old note about the family"), user.id)
        q.add_intervention(session, _visit(RECENT, "recent note"), user.id)
        old = q.add_feedback(
            session,
            q.FeedbackIn(student_id="S000001", as_of=OLD, kind="useful", comment="old"),
            user.id,
        )
        q.add_feedback(
            session,
            q.FeedbackIn(student_id="S000001", as_of=RECENT, kind="useful", comment="recent"),
            user.id,
        )
        session.execute(update(Feedback).where(Feedback.id == old.id).values(created_at=_at(OLD)))
        record_access(session, viewer, "S000001", "GET /students/{id}", "A", at=_at(OLD))
        record_access(session, viewer, "S000001", "GET /students/{id}", "A", at=_at(RECENT))
    return user.id


def test_purge_blanks_old_free_text_and_removes_old_audit_rows_only(db_sessions) -> None:
    seed(db_sessions)
    with db_sessions.begin() as session:
        result = purge(session, today=TODAY, years=3)
    assert result.cutoff == dt.date(2023, 11, 23)
    assert (result.notes_blanked, result.comments_blanked, result.audit_removed) == (1, 1, 1)
    with db_sessions() as session:
        visits = {v.date: v for v in session.scalars(select(Intervention))}
        assert visits[OLD].note is None and visits[OLD].outcome == "contacted"  # fact kept
        assert visits[RECENT].note == "recent note"
        comments = {f.as_of: f.comment for f in session.scalars(select(Feedback))}
        assert comments == {OLD: None, RECENT: "recent"}
        audit = recent_access(session)
        assert [a.at.date() for a in audit] == [RECENT]
    with db_sessions.begin() as session:  # idempotent
        again = purge(session, today=TODAY, years=3)
    assert (again.notes_blanked, again.comments_blanked, again.audit_removed) == (0, 0, 0)


def test_a_longer_retention_keeps_more(db_sessions) -> None:
    seed(db_sessions)
    with db_sessions.begin() as session:
        result = purge(session, today=TODAY, years=5)
    assert (result.notes_blanked, result.comments_blanked, result.audit_removed) == (0, 0, 0)


def test_cutoff_handles_leap_days_and_refuses_zero_years() -> None:
    assert cutoff_for(dt.date(2028, 2, 29), 3) == dt.date(2025, 2, 28)
    with pytest.raises(ValueError, match="at least 1"):
        cutoff_for(TODAY, 0)
    assert Settings().retention.years == 3
    with pytest.raises(ValueError):
        RetentionSettings(years=0)


def test_baoxue_retention_purge_reads_the_setting(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'baoxue.db'}"
    init_db(url)
    engine = make_engine(url)
    seed(session_factory(engine))
    engine.dispose()
    monkeypatch.setenv("BAOXUE_PATHS__HOME", str(home))
    monkeypatch.setenv("BAOXUE_RETENTION__YEARS", "1")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["retention", "purge"], catch_exceptions=False)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "retention (1 years" in result.output
    # the RECENT comment was given today (created_at), so it stays
    assert "2 notes and 1 comments blanked, 2 audit rows removed" in result.output
