"""Crash safety of the weekly batch and the database, with real processes and files.

- `baoxue score` in a subprocess, killed with SIGKILL while its scores are written (the
  `BAOXUE_TEST_PAUSE_AT` hook only pauses there): last week's scores and list files are
  untouched, the killed week left no score behind, and a rerun completes.
- Two clients recording visits at the same time over HTTP, and two processes' engines
  writing at once: every row arrives (SQLite WAL and a busy timeout).
- A locked database and a read-only one give a sentence (CLI exit 1, HTTP 503 JSON),
  never a stack trace or the SQL statement.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from features.sources import write_export
from features.synthetic import generate_county
from serving.app import create_app
from serving.registry import ModelHolder
from serving.services.weekly_lists import run_weekly
from serving.settings import DatabaseSettings, MlflowSettings, PathSettings, Settings
from serving.storage import queries
from serving.storage.db import init_db, make_engine, session_factory
from serving.storage.tables import Intervention, WeeklyScore
from tests.serving.api import conftest as api_tests
from tests.serving.api.conftest import bearer, make_settings

LAST_WEEK = dt.date(2026, 3, 9)
THIS_WEEK = dt.date(2026, 3, 16)
SECRET = "crash-test-secret-key-0123456789-abcdef"
# the API tests' users, scores and noted visit, reused here
api_template = api_tests.api_template
empty_mlflow = api_tests.empty_mlflow
viewers = api_tests.viewers


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAOXUE_")}
    env |= {
        "BAOXUE_PATHS__HOME": str(settings.paths.home),
        "BAOXUE_DB__URL": settings.database_url,
        "BAOXUE_MLFLOW__TRACKING_URI": settings.tracking_uri,
        "BAOXUE_MLFLOW__REGISTRY_URI": settings.registry_uri,
        "BAOXUE_MLFLOW__MODEL_NAME": settings.mlflow.model_name,
        "BAOXUE_SERVING__SECRET_KEY": SECRET,
        **extra,
    }
    return env


def _baoxue(*args: str, env: dict[str, str], cwd: Path) -> list[str]:
    return [sys.executable, "-m", "serving.cli", *args]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _scores(settings: Settings, as_of: dt.date) -> int:
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            query = select(func.count()).select_from(WeeklyScore).where(WeeklyScore.as_of == as_of)
            return int(connection.scalar(query) or 0)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def batch_home(trained, tmp_path_factory):
    """A home folder with a small export, the trained champion and last week's run."""
    _, store, _ = trained
    home = tmp_path_factory.mktemp("crash") / "home"
    export = write_export(generate_county(n_students=400, n_years=3, seed=5), home / "data")
    settings = Settings(
        paths=PathSettings(home=home),
        db=DatabaseSettings(url=f"sqlite:///{home / 'baoxue.db'}"),
        mlflow=MlflowSettings(
            tracking_uri=store.tracking_uri,
            registry_uri=store.tracking_uri,
            model_name=store.model_name,
        ),
    )
    init_db(settings.database_url)
    from features.sources import load_export

    tables = load_export(export).tables
    engine = make_engine(settings.database_url)
    loaded = ModelHolder.from_settings(settings).load()
    result = run_weekly(
        session_factory(engine),
        loaded,
        tables,
        as_of=LAST_WEEK,
        capacity=None,
        capacity_share=0.05,
        lists_dir=settings.paths.lists,
    )
    engine.dispose()
    return settings, result.n_students


def test_a_batch_killed_while_writing_scores_leaves_last_week_intact_and_reruns(
    batch_home, tmp_path
) -> None:
    settings, n_students = batch_home
    lists = settings.paths.lists
    before = _digest(lists / LAST_WEEK.isoformat())
    assert before and _scores(settings, LAST_WEEK) == n_students
    flag = tmp_path / "paused"
    env = _env(settings, BAOXUE_TEST_PAUSE_AT=f"scores_written:{flag}")
    args = ["score", str(settings.paths.data), "--as-of", THIS_WEEK.isoformat()]
    batch = subprocess.Popen(
        _baoxue(*args, env=env, cwd=tmp_path),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while not flag.exists():
            assert batch.poll() is None, batch.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the batch never reached its scores"
            time.sleep(0.1)
        # paused inside the transaction, with this week's scores written but not committed
        os.kill(batch.pid, signal.SIGKILL)
    finally:
        batch.wait(30)
    assert batch.returncode == -signal.SIGKILL

    assert _digest(lists / LAST_WEEK.isoformat()) == before
    assert _scores(settings, LAST_WEEK) == n_students
    assert _scores(settings, THIS_WEEK) == 0
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        assert queries.latest_run(session).as_of == LAST_WEEK  # type: ignore[union-attr]
    engine.dispose()
    assert not (lists / THIS_WEEK.isoformat()).exists()

    env = _env(settings)
    rerun = subprocess.run(
        _baoxue(*args, env=env, cwd=tmp_path),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _scores(settings, THIS_WEEK) > 0
    assert _digest(lists / LAST_WEEK.isoformat()) == before
    assert (lists / THIS_WEEK.isoformat()).is_dir()
    assert not [p for p in lists.iterdir() if p.name.startswith(".")]  # no staging left


def _kill_at(point: str, args: list[str], settings: Settings, cwd: Path) -> None:
    """Run `baoxue ARGS` in a subprocess paused at `point` (BAOXUE_TEST_PAUSE_AT) and
    SIGKILL it there."""
    flag = cwd / f"paused-{point}"
    env = _env(settings, BAOXUE_TEST_PAUSE_AT=f"{point}:{flag}")
    batch = subprocess.Popen(
        _baoxue(*args, env=env, cwd=cwd),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while not flag.exists():
            assert batch.poll() is None, batch.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"the batch never reached {point}"
            time.sleep(0.1)
        os.kill(batch.pid, signal.SIGKILL)
    finally:
        batch.wait(30)
    assert batch.returncode == -signal.SIGKILL


def _latest_as_of(settings: Settings) -> dt.date:
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            run = queries.latest_run(session)
            assert run is not None
            return run.as_of
    finally:
        engine.dispose()


def test_a_batch_killed_after_publishing_its_lists_before_the_commit(batch_home, tmp_path):
    """The other window: the week's folder is already swapped into place, the scores,
    cases and the finished run are not committed. The earlier week stays as it was, in
    the database and on disk, and stays the week the service shows; the killed week's
    folder is on disk without a run behind it until the rerun replaces it."""
    settings, n_students = batch_home
    lists = settings.paths.lists
    week = THIS_WEEK + dt.timedelta(days=7)
    before = _digest(lists / LAST_WEEK.isoformat())
    assert before and _scores(settings, LAST_WEEK) == n_students
    args = ["score", str(settings.paths.data), "--as-of", week.isoformat()]
    _kill_at("lists_published", args, settings, tmp_path)

    assert _digest(lists / LAST_WEEK.isoformat()) == before
    assert _scores(settings, LAST_WEEK) == n_students
    assert _scores(settings, week) == 0
    assert _latest_as_of(settings) <= THIS_WEEK  # the killed week is not the latest run
    assert _digest(lists / week.isoformat())  # published, but never committed
    assert not [p for p in lists.iterdir() if p.name.startswith(".")]

    env = _env(settings)
    rerun = subprocess.run(
        _baoxue(*args, env=env, cwd=tmp_path),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _scores(settings, week) > 0 and _latest_as_of(settings) == week
    assert _digest(lists / LAST_WEEK.isoformat()) == before
    assert not [p for p in lists.iterdir() if p.name.startswith(".")]  # no staging left


# -- concurrent writes -------------------------------------------------------------------


@pytest.fixture
def api(settings_for_api) -> TestClient:
    with TestClient(create_app(settings_for_api)) as client:
        yield client


@pytest.fixture
def settings_for_api(tmp_path, api_template, empty_mlflow) -> Settings:
    import shutil

    db_path = tmp_path / "baoxue.db"
    shutil.copyfile(api_template.path, db_path)
    return make_settings(tmp_path / "home", db_path, empty_mlflow)


def _interventions(db_url: str, student_id: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            query = (
                select(func.count())
                .select_from(Intervention)
                .where(Intervention.student_id == student_id)
            )
            return int(connection.scalar(query) or 0)
    finally:
        engine.dispose()


def test_two_clients_recording_visits_at_once_lose_nothing(api, viewers) -> None:
    per_client = 25
    headers = {"admin": bearer(viewers["admin_a"]), "teacher": bearer(viewers["teacher_a1"])}
    before = _interventions(str(api.app.state.engine.url), "STU-A1")
    statuses: list[int] = []
    start = threading.Barrier(2)

    def record(who: str) -> None:
        start.wait()
        for i in range(per_client):
            body = {
                "date": "2024-03-12",
                "kind": "phone_call",
                "outcome": "contacted",
                "note": f"call {who} {i}",
            }
            answer = api.post("/v1/students/STU-A1/interventions", json=body, headers=headers[who])
            statuses.append(answer.status_code)

    threads = [threading.Thread(target=record, args=(who,)) for who in headers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses.count(201) == 2 * per_client, statuses
    assert _interventions(str(api.app.state.engine.url), "STU-A1") == before + 2 * per_client


def test_two_processes_writing_at_once_wait_for_each_other(db_url) -> None:
    """Two engines (as the batch and the server would hold) inserting in parallel."""
    per_writer = 40

    def write(who: int) -> None:
        engine = make_engine(db_url)
        sessions = session_factory(engine)
        for i in range(per_writer):
            with sessions.begin() as session:
                queries.add_intervention(
                    session,
                    queries.InterventionIn(
                        student_id="STU-X",
                        school_id="SCH-X",
                        class_id="SCH-X-C1",
                        date=dt.date(2024, 3, 1),
                        kind="home_visit",
                        by_role="homeroom_teacher",
                        outcome="contacted",
                        note=f"writer {who} visit {i}",
                    ),
                    recorded_by=None,
                )
        engine.dispose()

    threads = [threading.Thread(target=write, args=(who,)) for who in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert _interventions(db_url, "STU-X") == 2 * per_writer


# -- a database that cannot be written ---------------------------------------------------


def _hold_write_lock(path: str) -> sqlite3.Connection:
    """Another process's long write transaction (BEGIN IMMEDIATE holds the write lock)."""
    connection = sqlite3.connect(path, timeout=1, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    return connection


def test_a_locked_database_answers_503_with_a_sentence(settings_for_api, viewers) -> None:
    path = settings_for_api.database_url.removeprefix("sqlite:///")
    settings_for_api.db.url = f"sqlite:///{path}?timeout=0.3"
    body = {"date": "2024-03-12", "kind": "phone_call", "by_role": "homeroom_teacher"}
    body |= {"outcome": "contacted", "note": "NOTE-SECRET locked"}
    with TestClient(create_app(settings_for_api)) as client:
        lock = _hold_write_lock(path)
        try:
            answer = client.post(
                "/v1/students/STU-A1/interventions",
                json=body,
                headers=bearer(viewers["teacher_a1"]),
            )
        finally:
            lock.rollback()
            lock.close()
        assert answer.status_code == 503, answer.text
        out = answer.json()
        assert out["error"] == "database_unavailable"
        assert "busy" in out["message"] and "try again" in out["message"]
        assert "INSERT" not in answer.text and "NOTE-SECRET" not in answer.text
        assert answer.headers["Retry-After"]
        # once the lock is gone the same request goes through
        again = client.post(
            "/v1/students/STU-A1/interventions", json=body, headers=bearer(viewers["teacher_a1"])
        )
        assert again.status_code == 201


def test_a_read_only_database_answers_503_and_reads_still_work(settings_for_api, viewers):
    path = settings_for_api.database_url.removeprefix("sqlite:///")
    settings_for_api.db.url = f"sqlite:///file:{path}?mode=ro&uri=true"
    body = {"date": "2024-03-12", "kind": "phone_call", "by_role": "homeroom_teacher"}
    body |= {"outcome": "contacted", "note": "NOTE-SECRET readonly"}
    with TestClient(create_app(settings_for_api)) as client:
        read = client.get("/v1/students/STU-A1", headers=bearer(viewers["county"]))
        write = client.post(
            "/v1/students/STU-A1/interventions", json=body, headers=bearer(viewers["teacher_a1"])
        )
    assert read.status_code in (200, 503)  # the read's audit row is a write, too
    assert write.status_code == 503, write.text
    assert write.json()["error"] == "database_unavailable"
    assert "read-only" in write.json()["message"]
    assert "NOTE-SECRET" not in write.text and "INSERT" not in write.text


def test_the_cli_says_the_database_is_locked_instead_of_a_traceback(tmp_path) -> None:
    home = tmp_path / "home"
    path = home / "baoxue.db"
    init_db(f"sqlite:///{path}")
    settings = Settings(
        paths=PathSettings(home=home), db=DatabaseSettings(url=f"sqlite:///{path}?timeout=0.3")
    )
    env = _env(settings)
    lock = _hold_write_lock(str(path))
    try:
        done = subprocess.run(
            _baoxue("users", "add", "ming", "--role", "county_admin", env=env, cwd=tmp_path),
            env=env,
            cwd=tmp_path,
            input="a long enough password 123\na long enough password 123\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        lock.rollback()
        lock.close()
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "database is busy" in output
    assert "Traceback" not in output and "INSERT" not in output
