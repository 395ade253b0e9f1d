"""Engine settings and Alembic migrations on real SQLite files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from serving.storage.db import (
    alembic_config,
    downgrade,
    init_db,
    make_engine,
    migrate,
    session_factory,
    session_scope,
)
from serving.storage.tables import Base, ScoreRun, WeeklyScore

TABLES = {
    "users",
    "user_classes",
    "weekly_scores",
    "score_runs",
    "interventions",
    "feedback",
    "cases",
    "case_events",
    "audit_log",
}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_init_db_creates_the_folder_and_migrates_from_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'home' / 'nested' / 'baoxue.db'}"
    init_db(url)
    engine = make_engine(url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == _head()
    finally:
        engine.dispose()


def test_session_scope_migrates_commits_and_rolls_back(tmp_path: Path) -> None:
    from serving.settings import PathSettings, Settings

    settings = Settings(paths=PathSettings(home=tmp_path / "home"))
    with session_scope(settings) as session:  # a new database: migrated first
        session.add(ScoreRun(as_of=dt.date(2025, 3, 3), model_version="1"))
    with pytest.raises(RuntimeError), session_scope(settings, init=False) as session:
        session.add(ScoreRun(as_of=dt.date(2025, 3, 10), model_version="2"))
        session.flush()
        raise RuntimeError("the job failed")
    with session_scope(settings, init=False) as session:
        kept = session.scalars(select(ScoreRun.model_version)).all()
    assert kept == ["1"]


def test_migrations_create_exactly_the_models_schema(db_engine) -> None:
    with db_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrating_again_changes_nothing_and_keeps_rows(db_url, db_sessions) -> None:
    with db_sessions.begin() as session:
        session.add(ScoreRun(as_of=dt.date(2024, 3, 4), model_version="v1"))
    migrate(db_url)
    init_db(db_url)
    with db_sessions() as session:
        assert session.scalar(select(ScoreRun.model_version)) == "v1"


def test_downgrade_to_base_then_up_again(db_url) -> None:
    url = db_url
    downgrade(url, "base")
    engine = make_engine(url)
    try:
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate(engine)
        inspector = inspect(engine)
        inspector.clear_cache()
        assert TABLES <= set(inspector.get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(db_engine) -> None:
    with db_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_foreign_keys_are_enforced(db_sessions) -> None:
    with pytest.raises(IntegrityError), db_sessions.begin() as session:
        session.add(
            WeeklyScore(
                run_id=999,
                as_of=dt.date(2024, 3, 4),
                student_id="S1",
                school_id="A",
                class_id="A-1",
                grade_level=7,
                risk_score=0.5,
                margin=0.0,
                rank_in_school=1,
                tier="high",
                model_version="v1",
            )
        )


def test_in_memory_database_is_shared_by_every_session_of_its_engine() -> None:
    engine = make_engine("sqlite://")
    try:
        migrate(engine)
        sessions = session_factory(engine)
        with sessions.begin() as session:
            session.add(ScoreRun(as_of=dt.date(2024, 3, 4), model_version="v1"))
        with sessions() as session:
            assert session.scalar(select(ScoreRun.model_version)) == "v1"
    finally:
        engine.dispose()


def test_timestamps_are_stored_naive_utc_and_read_back_aware(db_sessions, db_engine) -> None:
    beijing = dt.timezone(dt.timedelta(hours=8))
    started = dt.datetime(2024, 3, 4, 8, 30, tzinfo=beijing)
    with db_sessions.begin() as session:
        session.add(ScoreRun(as_of=dt.date(2024, 3, 4), model_version="v1", started_at=started))
    with db_sessions() as session:
        stored = session.scalar(select(ScoreRun.started_at))
    assert stored == started and stored.tzinfo == dt.UTC and stored.hour == 0
    with db_engine.connect() as connection:
        raw = connection.execute(text("SELECT started_at FROM score_runs")).scalar()
    assert str(raw).startswith("2024-03-04 00:30")
