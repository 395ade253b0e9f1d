"""The access log, and that nothing personal reaches the application log."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from serving.audit import AccessIn, AuditWriter, purge_older_than, recent_access, record_access
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


# -- the group-commit writer that reads are audited through -------------------------------


def _count_commits(engine) -> list[int]:
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    return commits


def test_writer_commits_concurrent_readers_rows_together(db_engine, db_sessions, viewers) -> None:
    li, _ = viewers
    writer = AuditWriter(db_sessions)
    n_threads = 12
    waiting = threading.Semaphore(0)
    first_commit_may_go = threading.Event()
    hold_first = [True]

    def hold(conn) -> None:
        # the writer's first transaction waits until every other reader is queued, so the
        # second transaction must carry all of their rows
        if hold_first[0]:
            hold_first[0] = False
            first_commit_may_go.wait(10)

    event.listen(db_engine, "commit", hold)
    commits = _count_commits(db_engine)

    def read(i: int) -> None:
        waiting.release()
        writer.record([AccessIn.of(li, f"S{i}", "GET /v1/students/{student_id}", "A")])

    first = threading.Thread(target=read, args=(0,))
    first.start()
    assert waiting.acquire(timeout=5)
    time.sleep(0.2)  # the first row's transaction is now waiting in `hold`
    others = [threading.Thread(target=read, args=(i,)) for i in range(1, n_threads)]
    for t in others:
        t.start()
    for _ in others:
        assert waiting.acquire(timeout=5)
    time.sleep(0.3)  # each has put its row in the queue
    first_commit_may_go.set()
    for t in [first, *others]:
        t.join(10)
    writer.close()
    with db_sessions() as session:
        rows = recent_access(session, limit=100)
    assert sorted(r.student_id for r in rows) == sorted(f"S{i}" for i in range(n_threads))
    assert len(commits) == 2  # 12 readers, two transactions


def test_writer_returns_only_after_the_row_is_committed(db_sessions, viewers) -> None:
    li, _ = viewers
    writer = AuditWriter(db_sessions)
    writer.record([AccessIn.of(li, "S9", "GET /students/{id}", "A")])
    with db_sessions() as session:  # another connection sees it at once
        assert [r.student_id for r in recent_access(session)] == ["S9"]
    writer.close()
    writer.record([AccessIn.of(li, "S10", "GET /students/{id}", "A")])  # after close: inline
    with db_sessions() as session:
        assert [r.student_id for r in recent_access(session)] == ["S10", "S9"]


def test_writer_raises_the_commit_error_in_the_reader(db_engine, db_sessions, viewers) -> None:
    li, _ = viewers
    with db_engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_log"))
    writer = AuditWriter(db_sessions)
    with pytest.raises(OperationalError):
        writer.record([AccessIn.of(li, "S1", "GET /students/{id}", "A")])
    writer.close()


def test_an_action_or_id_longer_than_its_column_is_cut_not_refused(viewers, db_session) -> None:
    # A 120-character school id in a URL once made the audit raise, and the access went
    # unrecorded (issue 21 item 9): what does not fit is cut, the row is always written.
    li, _ = viewers
    row = AccessIn.of(li, "S" * 100, "x" * 129, "A" * 100)
    assert len(row.action) == 128 and row.action.endswith("…")
    assert len(row.student_id) == 64 and len(row.school_id) == 64
    stored = record_access(db_session, li, "S" * 100, "GET " + "y" * 200, "A" * 100)
    assert len(stored.action) == 128 and stored.action.startswith("GET yyy")
    assert len(stored.student_id) == 64 and len(stored.school_id) == 64
