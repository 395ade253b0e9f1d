"""The service database's tables (SQLAlchemy 2 declarative, typed columns).

Everything here runs unchanged on SQLite and PostgreSQL: ids of students, schools and
classes are the export's pseudonymous strings; timestamps are stored as naive UTC and
read back as aware UTC (`UtcDateTime`); lists and reasons are `JSON`. The schema itself is
created by the Alembic migrations in `serving/storage/migrations/`, never by
`metadata.create_all`, and a test checks that the two agree.

Enumerations are stored as short strings with a CHECK constraint, so a bad code fails at
the database as well as in the pydantic shapes of `serving.storage.queries`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from features.tables import INTERVENTION_KINDS, OUTCOMES, ROLES

# Who may log in, and what they may see (see `serving.auth.Viewer`).
USER_ROLES = ("county_admin", "school_admin", "teacher", "researcher")
# The role a person holds in the policy documents; it sets their visit minimum per term
# (homeroom: half the class, subject teacher: 15, principal: 40).
STAFF_ROLES = ("homeroom_teacher", "subject_teacher", "principal", "county", "researcher")
TIERS = ("high", "medium", "low")
RUN_STATUSES = ("running", "done", "failed")
FEEDBACK_KINDS = ("useful", "not_useful", "wrongly_flagged")
CASE_REASONS = ("ladder", "high_tier")
# open, or closed one by one (销号): returned to school, transferred with papers, other.
CASE_STATUSES = ("open", "returned", "transferred", "closed_other")

ID_LENGTH = 64  # student, school and class ids from the export
# The largest row id (Integer: 32 bits on PostgreSQL); ids from a request are checked
# against it at the edge, so a bigger number is refused (404/422), never a database error.
ROW_ID_MAX = 2**31 - 1


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC (the storage edge is allowed a clock)."""
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC and read back as aware UTC, on any database.

    SQLite keeps no time zone, PostgreSQL's `timestamp without time zone` neither; storing
    UTC everywhere keeps comparisons and retention cut-offs the same on both.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


def _one_of(column: str, values: tuple[str, ...], name: str | None = None) -> CheckConstraint:
    """CHECK that `column` holds one of `values` (NULL passes, as SQL does)."""
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name or column)


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with named constraints, so migrations can alter them later."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UtcDateTime(), dict[str, Any]: JSON()}


class User(Base):
    """A person who logs in. Scope: `school_id` and `classes` (see `serving.auth.Viewer`)."""

    __tablename__ = "users"
    __table_args__ = (
        _one_of("role", USER_ROLES),
        _one_of("staff_role", STAFF_ROLES),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    staff_role: Mapped[str | None] = mapped_column(String(32))
    school_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Carried by every token and page session; raised on logout, password change, role
    # change and deactivation, so every token and session issued before ends at once.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    classes: Mapped[list[UserClass]] = relationship(
        cascade="all, delete-orphan", order_by="UserClass.class_id", lazy="selectin"
    )


class UserClass(Base):
    """One class a teacher is responsible for (in their own school)."""

    __tablename__ = "user_classes"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    class_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)


class LoginAttempt(Base):
    """Login attempts counted in a fixed window, per (username, address) and per address.

    `key` is a SHA-256 of the scope (`serving.services.logins`), so neither a username
    typed by mistake (sometimes a password) nor an address is stored in the clear. In the
    database rather than in memory, so a restart or a second worker keeps the counts.
    """

    __tablename__ = "login_attempts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer)


class ScoreRun(Base):
    """One weekly batch: scores of a run are written in one transaction with its finish."""

    __tablename__ = "score_runs"
    __table_args__ = (_one_of("status", RUN_STATUSES),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date, index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")
    n_students: Mapped[int | None]
    lists_dir: Mapped[str | None] = mapped_column(String(1024))


class WeeklyScore(Base):
    """One student's score for one `as_of`; a re-run of that week replaces the whole week."""

    __tablename__ = "weekly_scores"
    __table_args__ = (
        UniqueConstraint("as_of", "student_id"),
        Index(None, "school_id", "as_of"),
        Index(None, "class_id", "as_of"),
        Index(None, "student_id", "as_of"),
        _one_of("tier", TIERS),
        CheckConstraint("risk_score >= 0 AND risk_score <= 1", name="risk_score"),
        CheckConstraint("escalation_level >= 0", name="escalation_level"),
        CheckConstraint("rank_in_school >= 1", name="rank_in_school"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("score_runs.id"), index=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    student_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    school_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    class_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    grade_level: Mapped[int]
    risk_score: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    rank_in_school: Mapped[int]
    tier: Mapped[str] = mapped_column(String(8))
    escalation_level: Mapped[int] = mapped_column(default=0)
    # [{group, reason_code, feature, value, contribution}, ...], strongest first
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model_version: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Intervention(Base):
    """Something a person did for a student (家访, 电话, 谈心, ...). `note` is never logged."""

    __tablename__ = "interventions"
    __table_args__ = (
        Index(None, "student_id", "date"),
        Index(None, "school_id", "date"),
        _one_of("kind", INTERVENTION_KINDS),
        _one_of("by_role", ROLES),
        _one_of("outcome", OUTCOMES),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    student_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    school_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    class_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    date: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(32))
    by_role: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Feedback(Base):
    """A user's verdict on one student's flag for one week."""

    __tablename__ = "feedback"
    __table_args__ = (
        Index(None, "student_id", "as_of"),
        _one_of("kind", FEEDBACK_KINDS),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    student_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    as_of: Mapped[dt.date] = mapped_column(Date, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Case(Base):
    """An at-risk student's case: responsible adult (包保责任人), plan (一生一策), closure."""

    __tablename__ = "cases"
    __table_args__ = (
        Index(None, "school_id", "status"),
        Index(None, "student_id", "status"),
        _one_of("reason", CASE_REASONS),
        _one_of("status", CASE_STATUSES),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    student_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    school_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(16))
    owner: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    plan: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    closed_at: Mapped[dt.datetime | None]
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    close_reason: Mapped[str | None] = mapped_column(Text)


class CaseEvent(Base):
    """One entry in a case's history (opened, owner set, plan changed, closed, ...)."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditEntry(Base):
    """Who looked at which student, when (PIPL: log who looked at what)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index(None, "student_id", "at"),
        Index(None, "user_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    student_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    action: Mapped[str] = mapped_column(String(128))
    school_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
