"""The same storage code on PostgreSQL, when a test server is given.

Set `BAOXUE_TEST_POSTGRES_URL` (e.g. `postgresql+psycopg://bx@127.0.0.1:55432/baoxue`)
to an empty, throwaway database; every table in its `public` schema is dropped. Without
it these tests are skipped, and SQLite covers the same code.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from serving.storage import queries as q
from serving.storage.db import downgrade, make_engine, migrate, session_factory
from serving.storage.tables import Base

URL = os.environ.get("BAOXUE_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="BAOXUE_TEST_POSTGRES_URL is not set")

WEEK = dt.date(2024, 3, 4)


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    assert URL
    engine = make_engine(URL)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    migrate(URL)
    yield engine
    engine.dispose()


def _score(student_id: str, risk_score: float) -> q.WeeklyScoreIn:
    return q.WeeklyScoreIn(
        student_id=student_id,
        school_id="A",
        class_id="A-1",
        grade_level=7,
        risk_score=risk_score,
        margin=0.0,
        rank_in_school=1,
        tier="high",
    )


def test_postgres_migrates_to_the_models_schema_and_back(pg_engine: Engine) -> None:
    with pg_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    downgrade(URL or "", "base")
    assert set(inspect(pg_engine).get_table_names()) <= {"alembic_version"}
    migrate(pg_engine)


def test_postgres_replaces_a_week_atomically(pg_engine: Engine) -> None:
    sessions = session_factory(pg_engine)
    with sessions.begin() as session:
        run = q.start_run(session, as_of=WEEK, model_version="v1")
    with sessions.begin() as session:
        q.save_weekly_scores(session, run.id, [_score("S1", 0.9), _score("S2", 0.1)])
        q.finish_run(session, run.id)
    with sessions.begin() as session:
        again = q.start_run(session, as_of=WEEK, model_version="v2")
    with pytest.raises(IntegrityError), sessions.begin() as session:
        q.save_weekly_scores(session, again.id, [_score("S3", 0.5), _score("S3", 0.4)])
    with sessions() as session:
        rows = q.scores_for(session, WEEK)
        assert [(r.student_id, r.model_version) for r in rows] == [("S1", "v1"), ("S2", "v1")]
        assert rows[0].created_at.tzinfo == dt.UTC
        assert q.latest_as_of(session) == WEEK
