"""Reading and writing the service database: plain functions taking a `Session`.

Shapes follow STYLE §4: `...In` is what a caller hands in (validated pydantic),
`...Row` is what was stored (frozen, read back from the database). No ORM object leaves
this module, and the response shapes (`...Out`) belong to `serving/api/schemas.py`.

Functions add and flush; the caller owns the transaction. The weekly batch writes a
week's scores in one transaction, so a failure leaves the previous scores untouched:

    with sessions.begin() as session:
        run = start_run(session, as_of=as_of, model_version=version)
    try:
        with sessions.begin() as session:
            save_weekly_scores(session, run.id, rows)   # replaces that as_of's rows
            finish_run(session, run.id)
    except Exception:
        with sessions.begin() as session:
            fail_run(session, run.id)
        raise

Nothing here logs student ids or free text; the batch functions log counts and run ids.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import JSON, Table, TypeDecorator, delete, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from features.tables import INTERVENTION_KINDS, OUTCOMES, ROLES
from serving.storage.tables import (
    CASE_REASONS,
    CASE_STATUSES,
    FEEDBACK_KINDS,
    TIERS,
    Case,
    CaseEvent,
    Feedback,
    Intervention,
    ScoreRun,
    WeeklyScore,
    utcnow,
)

logger = logging.getLogger(__name__)

INSERT_CHUNK = 5_000  # rows per executemany when saving a week's scores
IN_CHUNK = 500  # ids per IN (...) list, well below any database's parameter limit
NOTE_MAX = 4_000  # characters of free text in a note, comment or plan


class RecordNotFound(LookupError):
    """A run or case id that is not in the database."""


class RunNotRunning(RuntimeError):
    """Scores were saved into a run that has already finished or failed."""


def _one_of(values: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"must be one of {', '.join(values)}")
        return value

    return check


Id = Annotated[str, Field(min_length=1, max_length=64)]
Tier = Annotated[str, AfterValidator(_one_of(TIERS))]
InterventionKind = Annotated[str, AfterValidator(_one_of(INTERVENTION_KINDS))]
ByRole = Annotated[str, AfterValidator(_one_of(ROLES))]
Outcome = Annotated[str, AfterValidator(_one_of(OUTCOMES))]
FeedbackKind = Annotated[str, AfterValidator(_one_of(FEEDBACK_KINDS))]
CaseReason = Annotated[str, AfterValidator(_one_of(CASE_REASONS))]
CaseStatus = Annotated[str, AfterValidator(_one_of(CASE_STATUSES))]
FreeText = Annotated[str, Field(max_length=NOTE_MAX)]

_ROW = ConfigDict(frozen=True, from_attributes=True)


class Reason(BaseModel):
    """One reason behind a score: a feature's SHAP contribution, with its stable code."""

    model_config = ConfigDict(frozen=True)

    group: str
    reason_code: str
    feature: str
    value: float | int | str | bool | None = None
    contribution: float

    @field_validator("value")
    @classmethod
    def _json_safe(cls, value: Any) -> Any:
        # JSON has no NaN; a missing feature value is stored as null.
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value


class WeeklyScoreIn(BaseModel):
    """One student's score from the weekly batch; `as_of` and model version come from the run."""

    student_id: Id
    school_id: Id
    class_id: Id
    grade_level: int = Field(ge=1, le=9)
    risk_score: float = Field(ge=0, le=1)
    margin: float = Field(allow_inf_nan=False)
    rank_in_school: int = Field(ge=1)
    tier: Tier
    escalation_level: int = Field(0, ge=0)
    reasons: tuple[Reason, ...] = ()


class WeeklyScoreRow(BaseModel):
    """A stored weekly score."""

    model_config = _ROW

    run_id: int
    as_of: dt.date
    student_id: str
    school_id: str
    class_id: str
    grade_level: int
    risk_score: float
    margin: float
    rank_in_school: int
    tier: str
    escalation_level: int
    reasons: tuple[Reason, ...]
    model_version: str
    created_at: dt.datetime


class RunRow(BaseModel):
    """A weekly batch run."""

    model_config = _ROW

    id: int
    as_of: dt.date
    model_version: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    n_students: int | None
    lists_dir: str | None


class InterventionIn(BaseModel):
    """Something done for a student, as recorded by a teacher or imported from the export."""

    student_id: Id
    school_id: Id
    class_id: Id | None = None
    date: dt.date
    kind: InterventionKind
    by_role: ByRole
    outcome: Outcome
    note: FreeText | None = None


class InterventionRow(BaseModel):
    """A stored intervention."""

    model_config = _ROW

    id: int
    student_id: str
    school_id: str
    class_id: str | None
    date: dt.date
    kind: str
    by_role: str
    outcome: str
    note: str | None
    recorded_by: int | None
    created_at: dt.datetime


class FeedbackIn(BaseModel):
    """A user's verdict on one student's flag for one week."""

    student_id: Id
    as_of: dt.date
    kind: FeedbackKind
    comment: FreeText | None = None


class FeedbackRow(BaseModel):
    """Stored feedback."""

    model_config = _ROW

    id: int
    student_id: str
    as_of: dt.date
    kind: str
    comment: str | None
    user_id: int
    created_at: dt.datetime


class CaseIn(BaseModel):
    """A case to open for an at-risk student."""

    student_id: Id
    school_id: Id
    reason: CaseReason
    owner: int | None = None  # 包保责任人, a user id
    plan: FreeText | None = None  # 一生一策


class CaseRow(BaseModel):
    """A stored case."""

    model_config = _ROW

    id: int
    student_id: str
    school_id: str
    opened_at: dt.datetime
    reason: str
    owner: int | None
    plan: str | None
    status: str
    closed_at: dt.datetime | None
    closed_by: int | None
    close_reason: str | None


class CaseEventRow(BaseModel):
    """One entry in a case's history."""

    model_config = _ROW

    id: int
    case_id: int
    at: dt.datetime
    user_id: int | None
    kind: str
    detail: dict[str, Any]


T = TypeVar("T")
RowT = TypeVar("RowT", bound=BaseModel)


PAUSE_ENV = "BAOXUE_TEST_PAUSE_AT"


def pause_point(name: str) -> None:
    """A hook for the crash tests, off unless `BAOXUE_TEST_PAUSE_AT=<name>:<flag file>`:
    then create the flag file and wait (up to two minutes) so a test can kill the process
    at this point. It only pauses; nothing else changes."""
    spec = os.environ.get(PAUSE_ENV, "")
    point, _, flag = spec.partition(":")
    if point != name or not flag:
        return
    Path(flag).touch()
    time.sleep(120)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# -- runs -------------------------------------------------------------------------------


def _run(session: Session, run_id: int) -> ScoreRun:
    run = session.get(ScoreRun, run_id)
    if run is None:
        raise RecordNotFound(f"score run {run_id} does not exist")
    return run


def start_run(
    session: Session, *, as_of: dt.date, model_version: str, lists_dir: str | None = None
) -> RunRow:
    """Record the start of a weekly batch for `as_of`; commit this before writing scores."""
    run = ScoreRun(as_of=as_of, model_version=model_version, lists_dir=lists_dir)
    session.add(run)
    session.flush()
    logger.info("score run %d started for as_of %s (model %s)", run.id, as_of, model_version)
    return RunRow.model_validate(run)


def finish_run(session: Session, run_id: int, n_students: int | None = None) -> RunRow:
    """Mark a run done; `n_students` defaults to the number of scores it stored."""
    run = _run(session, run_id)
    if n_students is None:
        n_students = session.scalar(
            select(func.count()).select_from(WeeklyScore).where(WeeklyScore.run_id == run_id)
        )
    run.status, run.finished_at, run.n_students = "done", utcnow(), n_students
    session.flush()
    logger.info("score run %d done: %s students", run_id, n_students)
    return RunRow.model_validate(run)


def fail_run(session: Session, run_id: int) -> RunRow:
    """Mark a run failed (its scores were rolled back; the previous week's remain)."""
    run = _run(session, run_id)
    run.status, run.finished_at = "failed", utcnow()
    session.flush()
    logger.warning("score run %d failed", run_id)
    return RunRow.model_validate(run)


def get_run(session: Session, run_id: int) -> RunRow:
    """One run by id."""
    return RunRow.model_validate(_run(session, run_id))


def latest_run(session: Session, status: str | None = "done") -> RunRow | None:
    """The most recently started run (with `status`, unless None)."""
    query = select(ScoreRun).order_by(ScoreRun.started_at.desc(), ScoreRun.id.desc()).limit(1)
    if status is not None:
        query = query.where(ScoreRun.status == status)
    run = session.scalar(query)
    return None if run is None else RunRow.model_validate(run)


# -- weekly scores ----------------------------------------------------------------------


def save_weekly_scores(session: Session, run_id: int, rows: Iterable[WeeklyScoreIn]) -> int:
    """Replace every score of the run's `as_of` with `rows`; return how many were stored.

    Deletes and inserts inside the caller's transaction: if anything fails (a bad row,
    a duplicate student, the iterable itself raising), roll the session back and the
    scores stored before remain exactly as they were.
    """
    run = _run(session, run_id)
    if run.status != "running":
        raise RunNotRunning(f"score run {run_id} is {run.status}; start a new run")
    removed = session.execute(delete(WeeklyScore).where(WeeklyScore.as_of == run.as_of))
    fixed = {
        "run_id": run_id,
        "as_of": run.as_of,
        "model_version": run.model_version,
        "created_at": utcnow(),
    }
    table = cast(Table, WeeklyScore.__table__)
    stored = 0
    # The single writer of a weekly run is the province plan's bottleneck (docs/scale.md):
    # PostgreSQL gets COPY, others a Core executemany on the table (not the ORM's bulk
    # insert). Both write inside the caller's transaction.
    copy = session.get_bind().dialect.name == "postgresql"
    for chunk in _chunks(rows, INSERT_CHUNK):
        values = [{**row.model_dump(), **fixed} for row in chunk]
        if copy:
            _copy_into(session, table, values)
        else:
            session.execute(insert(table), values)
        stored += len(values)
    session.flush()
    pause_point("scores_written")
    logger.info(
        "score run %d: stored %d scores for %s, replacing %d",
        run_id,
        stored,
        run.as_of,
        getattr(removed, "rowcount", -1),
    )
    return stored


def _copy_into(session: Session, table: Any, values: list[dict[str, Any]]) -> None:
    """`COPY table (...) FROM STDIN` of `values` on the session's connection (PostgreSQL
    with psycopg 3). Each value goes through its column type's bind processing, as an
    INSERT's would (e.g. `UtcDateTime` to naive UTC); JSON columns are sent as JSON text."""
    if not values:
        return
    dialect = session.get_bind().dialect
    columns = [(c, _copy_converter(table.c[c].type, dialect)) for c in values[0]]
    connection = session.connection().connection.driver_connection
    assert connection is not None  # an open transaction's connection
    names = ", ".join(f'"{c}"' for c, _ in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        with connection.cursor() as cursor, cursor.copy(statement) as copy:
            for value in values:
                copy.write_row([value[c] if f is None else f(value[c]) for c, f in columns])
    except dbapi_error as exc:  # as SQLAlchemy would raise it (IntegrityError, ...)
        raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc


def _copy_converter(column_type: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """What COPY needs done to a Python value first: JSON to text, our own column types'
    bind processing; psycopg adapts the plain types itself."""
    if isinstance(column_type, JSON):
        return _json_text
    if isinstance(column_type, TypeDecorator):
        processor: Callable[[Any], Any] | None = column_type.bind_processor(dialect)
        return processor
    return None


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def latest_as_of(session: Session, school_id: str | None = None) -> dt.date | None:
    """The newest `as_of` with stored scores (for one school, or any)."""
    query = select(func.max(WeeklyScore.as_of))
    if school_id is not None:
        query = query.where(WeeklyScore.school_id == school_id)
    return session.scalar(query)


def previous_as_of(
    session: Session, as_of: dt.date, school_id: str | None = None
) -> dt.date | None:
    """The newest `as_of` with stored scores strictly before `as_of` (last week's list)."""
    query = select(func.max(WeeklyScore.as_of)).where(WeeklyScore.as_of < as_of)
    if school_id is not None:
        query = query.where(WeeklyScore.school_id == school_id)
    return session.scalar(query)


def scores_for(
    session: Session,
    as_of: dt.date,
    school_id: str | None = None,
    class_id: str | None = None,
) -> list[WeeklyScoreRow]:
    """Scores of one week, riskiest first (ties by `student_id`), optionally one school/class.

    Class ids are unique only within a school: pass `school_id` with `class_id`.
    """
    query = select(WeeklyScore).where(WeeklyScore.as_of == as_of)
    if school_id is not None:
        query = query.where(WeeklyScore.school_id == school_id)
    if class_id is not None:
        query = query.where(WeeklyScore.class_id == class_id)
    query = query.order_by(WeeklyScore.risk_score.desc(), WeeklyScore.student_id)
    return [WeeklyScoreRow.model_validate(row) for row in session.scalars(query)]


def score_for(session: Session, as_of: dt.date, student_id: str) -> WeeklyScoreRow | None:
    """One student's score for one week, if scored."""
    row = session.scalar(
        select(WeeklyScore).where(WeeklyScore.as_of == as_of, WeeklyScore.student_id == student_id)
    )
    return None if row is None else WeeklyScoreRow.model_validate(row)


def _plain_rows(session: Session, query: Any, row_type: type[RowT]) -> list[RowT]:
    """Rows of a Core select over one table's columns, as `row_type` (no ORM objects:
    the per-request reads of a student's record are about twice as fast this way)."""
    return [row_type.model_validate(m) for m in session.execute(query).mappings()]


def score_history(session: Session, student_id: str) -> list[WeeklyScoreRow]:
    """Every stored score of one student, oldest first."""
    table = WeeklyScore.__table__
    query = select(table).where(table.c.student_id == student_id).order_by(table.c.as_of)
    return _plain_rows(session, query, WeeklyScoreRow)


def latest_score(session: Session, student_id: str) -> WeeklyScoreRow | None:
    """The student's newest stored score, None if never scored."""
    table = WeeklyScore.__table__
    query = (
        select(table)
        .where(table.c.student_id == student_id)
        .order_by(table.c.as_of.desc())
        .limit(1)
    )
    rows = _plain_rows(session, query, WeeklyScoreRow)
    return rows[0] if rows else None


# -- interventions ----------------------------------------------------------------------


def add_intervention(
    session: Session, intervention: InterventionIn, recorded_by: int | None
) -> InterventionRow:
    """Store one intervention (`recorded_by`: the user's id; None for imported records)."""
    row = Intervention(**intervention.model_dump(), recorded_by=recorded_by)
    session.add(row)
    session.flush()
    return InterventionRow.model_validate(row)


def interventions_for(session: Session, student_id: str) -> list[InterventionRow]:
    """A student's interventions, newest first."""
    table = Intervention.__table__
    query = (
        select(table)
        .where(table.c.student_id == student_id)
        .order_by(table.c.date.desc(), table.c.id.desc())
    )
    return _plain_rows(session, query, InterventionRow)


def visits_this_term(
    session: Session,
    student_ids: Iterable[str],
    term_start: dt.date,
    *,
    until: dt.date | None = None,
    kinds: Sequence[str] = ("home_visit",),
) -> dict[str, int]:
    """How many visits each student has had since `term_start` (and before `until`).

    Every student asked about is in the answer, with 0 when never visited, so a page can
    show who still needs a home visit this term (家访: half the class each semester).
    """
    ids = list(dict.fromkeys(student_ids))
    counts = dict.fromkeys(ids, 0)
    for chunk in _chunks(ids, IN_CHUNK):
        query = (
            select(Intervention.student_id, func.count())
            .where(
                Intervention.student_id.in_(chunk),
                Intervention.date >= term_start,
                Intervention.kind.in_(list(kinds)),
            )
            .group_by(Intervention.student_id)
        )
        if until is not None:
            query = query.where(Intervention.date < until)
        for student_id, n in session.execute(query):
            counts[student_id] = int(n)
    return counts


# -- feedback ---------------------------------------------------------------------------


def add_feedback(session: Session, feedback: FeedbackIn, user_id: int) -> FeedbackRow:
    """Store a user's feedback on one student's flag."""
    row = Feedback(**feedback.model_dump(), user_id=user_id)
    session.add(row)
    session.flush()
    return FeedbackRow.model_validate(row)


def feedback_for(
    session: Session, student_id: str | None = None, as_of: dt.date | None = None
) -> list[FeedbackRow]:
    """Feedback on one student and/or one week, newest first."""
    table = Feedback.__table__
    query = select(table).order_by(table.c.created_at.desc(), table.c.id.desc())
    if student_id is not None:
        query = query.where(table.c.student_id == student_id)
    if as_of is not None:
        query = query.where(table.c.as_of == as_of)
    return _plain_rows(session, query, FeedbackRow)


# -- cases ------------------------------------------------------------------------------


def _case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise RecordNotFound(f"case {case_id} does not exist")
    return case


def _event(session: Session, case_id: int, kind: str, user_id: int | None, **detail: Any) -> None:
    session.add(CaseEvent(case_id=case_id, kind=kind, user_id=user_id, detail=detail))


def open_case(session: Session, case: CaseIn, user_id: int | None = None) -> CaseRow:
    """Open a case (the history records who opened it and why)."""
    row = Case(**case.model_dump())
    session.add(row)
    session.flush()
    _event(session, row.id, "opened", user_id, reason=case.reason, owner=case.owner)
    session.flush()
    return CaseRow.model_validate(row)


def update_case(
    session: Session,
    case_id: int,
    user_id: int | None,
    *,
    owner: int | None = None,
    plan: str | None = None,
) -> CaseRow:
    """Set a case's responsible adult and/or plan; the history records which changed."""
    row = _case(session, case_id)
    if owner is not None:
        row.owner = owner
        _event(session, case_id, "owner_set", user_id, owner=owner)
    if plan is not None:
        if len(plan) > NOTE_MAX:
            raise ValueError(f"a plan is at most {NOTE_MAX} characters")
        row.plan = plan
        _event(session, case_id, "plan_set", user_id)  # the plan's text stays in `cases`
    session.flush()
    return CaseRow.model_validate(row)


def close_case(
    session: Session,
    case_id: int,
    status: str,
    user_id: int | None,
    close_reason: str | None = None,
) -> CaseRow:
    """Close a case one by one (销号): returned, transferred or closed_other."""
    if status not in CASE_STATUSES or status == "open":
        raise ValueError(f"a case closes as one of {', '.join(CASE_STATUSES[1:])}")
    row = _case(session, case_id)
    row.status, row.closed_at, row.closed_by = status, utcnow(), user_id
    row.close_reason = close_reason
    _event(session, case_id, "closed", user_id, status=status)
    session.flush()
    return CaseRow.model_validate(row)


def cases_for(
    session: Session,
    school_id: str | None = None,
    student_id: str | None = None,
    status: str | None = "open",
) -> list[CaseRow]:
    """Cases of a school and/or student (open ones unless `status` says otherwise)."""
    query = select(Case).order_by(Case.opened_at.desc(), Case.id.desc())
    if school_id is not None:
        query = query.where(Case.school_id == school_id)
    if student_id is not None:
        query = query.where(Case.student_id == student_id)
    if status is not None:
        query = query.where(Case.status == status)
    return [CaseRow.model_validate(row) for row in session.scalars(query)]


def case_history(session: Session, case_id: int) -> list[CaseEventRow]:
    """A case's events, oldest first."""
    query = select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
    return [CaseEventRow.model_validate(row) for row in session.scalars(query)]
