"""A student's record as one viewer may see it, and what staff add to it.

Plain functions over a `Session` and a `Viewer` (no HTTP). The student's school and
class come from the service's own records (the newest weekly score, else the newest
intervention), never from the caller, so nobody can file a note under another school.

Scope (see `serving.auth.Viewer`): county_admin every school, school_admin their school,
teacher their classes, researcher no individual student (403). Notes on interventions
and comments on feedback are free text about a child: only the staff of the student's
own school read them (school_admin of that school, teachers of the class), not the
county. Nothing here logs student ids or free text.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from features.catalog import render_reason
from features.sources import locate_table, read_raw_table
from features.tables import ROLES, default_enrolment_start
from features.validation import check_columns, parse_table
from models.reasons import LadderAlert, ladder_alert
from serving.auth import Forbidden, Viewer
from serving.services.scoring import StudentNotFound
from serving.storage import queries
from serving.storage.queries import (
    FeedbackRow,
    InterventionRow,
    Reason,
    WeeklyScoreRow,
)
from serving.storage.tables import User

logger = logging.getLogger(__name__)

WRITER_ROLES = ("county_admin", "school_admin", "teacher")


@dataclass(frozen=True)
class Place:
    """Where a student is, as the service's records know it."""

    school_id: str
    class_id: str | None
    grade_level: int | None


@dataclass(frozen=True)
class RenderedReason:
    """A stored reason with its sentence in Chinese and English."""

    group: str
    reason_code: str
    feature: str
    value: float | int | str | bool | None
    contribution: float
    text_zh: str | None
    text_en: str | None


@dataclass(frozen=True)
class LadderState:
    """The ladder's alert in the newest scored week (None alert: level 0)."""

    as_of: dt.date
    escalation_level: int
    alert: LadderAlert | None


@dataclass(frozen=True)
class StudentRecord:
    """Everything the viewer may see of one student."""

    student_id: str
    place: Place
    current: WeeklyScoreRow | None
    current_reasons: tuple[RenderedReason, ...]
    history: tuple[WeeklyScoreRow, ...]
    ladder: LadderState | None
    interventions: tuple[InterventionRow, ...]
    feedback: tuple[FeedbackRow, ...]
    notes_visible: bool


def _not_found() -> StudentNotFound:
    return StudentNotFound("We have no record of this student.")


def locate(
    session: Session, student_id: str, latest: queries.WeeklyScoreRow | None = None
) -> Place:
    """The student's school, class and grade (from `latest`, their newest stored score,
    when the caller has it); `StudentNotFound` if we have no record."""
    last = latest or queries.latest_score(session, student_id)
    if last is not None:
        return Place(last.school_id, last.class_id, last.grade_level)
    interventions = queries.interventions_for(session, student_id)
    if interventions:
        last_visit = interventions[0]
        return Place(last_visit.school_id, last_visit.class_id, None)
    raise _not_found()


def check_individual_access(viewer: Viewer) -> None:
    """Researchers see aggregates only: `Forbidden` before anything is looked up."""
    if viewer.role == "researcher":
        raise Forbidden("Researchers see aggregates only, not individual students.")


def notes_visible(viewer: Viewer, place: Place) -> bool:
    """Whether `viewer` is staff of the student's own school (reads notes, comments)."""
    return viewer.role in ("school_admin", "teacher") and viewer.can_see(
        place.school_id, place.class_id
    )


def _render(reason: Reason) -> RenderedReason:
    texts: dict[str, str | None] = {}
    for lang in ("zh", "en"):
        try:
            number = reason.value if isinstance(reason.value, int | float) else None
            texts[lang] = render_reason(reason.feature, number, lang)  # type: ignore[arg-type]
        except (KeyError, ValueError, TypeError):  # a feature the catalog no longer has
            texts[lang] = None
    return RenderedReason(
        group=reason.group,
        reason_code=reason.reason_code,
        feature=reason.feature,
        value=reason.value,
        contribution=reason.contribution,
        text_zh=texts["zh"],
        text_en=texts["en"],
    )


def student_record(session: Session, viewer: Viewer, student_id: str) -> StudentRecord:
    """The student's current score and reasons, weekly history, ladder state,
    interventions and feedback, as `viewer` may see them.

    Raises `Forbidden` (researcher), `StudentNotFound`, or `NotYourStudent`.
    """
    check_individual_access(viewer)
    history = tuple(queries.score_history(session, student_id))
    current = history[-1] if history else None
    place = locate(session, student_id, current)
    viewer.check_can_see(place.school_id, place.class_id)
    ladder = None
    if current is not None:
        level = current.escalation_level
        ladder = LadderState(current.as_of, level, ladder_alert(level, level))
    return StudentRecord(
        student_id=student_id,
        place=place,
        current=current,
        current_reasons=tuple(_render(r) for r in current.reasons) if current else (),
        history=history,
        ladder=ladder,
        interventions=own_school_notes(viewer, queries.interventions_for(session, student_id)),
        feedback=own_school_comments(
            session, viewer, queries.feedback_for(session, student_id=student_id)
        ),
        notes_visible=notes_visible(viewer, place),
    )


def own_school_notes(viewer: Viewer, rows: list[InterventionRow]) -> tuple[InterventionRow, ...]:
    """Interventions with the notes written at another school blanked: a pupil who moves
    takes their facts along, but notes stay with the school that wrote them."""
    return tuple(
        r if r.school_id == viewer.school_id else r.model_copy(update={"note": None}) for r in rows
    )


def own_school_comments(
    session: Session, viewer: Viewer, rows: list[FeedbackRow]
) -> tuple[FeedbackRow, ...]:
    """Feedback with the comments of another school's staff blanked (as notes)."""
    writers = {r.user_id for r in rows if r.comment}
    schools = dict(
        session.execute(select(User.id, User.school_id).where(User.id.in_(writers))).all()
        if writers
        else ()
    )
    return tuple(
        r if schools.get(r.user_id) == viewer.school_id else r.model_copy(update={"comment": None})
        for r in rows
    )


class InvalidVisit(ValueError):
    """An intervention the record cannot take (422), naming the field at fault."""

    code = "invalid_intervention"

    def __init__(self, message: str, field: str) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


_DEFAULT_STAFF_ROLE = {"county_admin": "county", "school_admin": "principal"}


def staff_role_of(viewer: Viewer) -> str:
    """The role an intervention is recorded under: the viewer's staff role from their
    account (never what a client sends), else their account role's usual one."""
    if viewer.staff_role in ROLES:
        return viewer.staff_role
    return _DEFAULT_STAFF_ROLE.get(viewer.role, "homeroom_teacher")


def _school_year_start(day: dt.date) -> dt.date:
    year = day.year if day.month >= 8 else day.year - 1
    return default_enrolment_start(year).date()


def enrolled_since(session: Session, student_id: str, data_dir: Path | None) -> dt.date | None:
    """The first day the student is known to be enrolled: their first enrolment row's
    start in the export; without one, the start of the school year of the first week
    the service scored them (else of their first recorded visit); None if neither."""
    index = None if data_dir is None else export_index(data_dir)
    if index is not None:
        starts = index.enrolments.rows(student_id)["start_date"]
        if len(starts):
            return _day(starts.min())
    history = queries.score_history(session, student_id)
    if history:
        return _school_year_start(history[0].as_of)
    visits = queries.interventions_for(session, student_id)
    return _school_year_start(min(v.date for v in visits)) if visits else None


def check_visit(
    date: dt.date, by_role: str | None, *, role: str, since: dt.date | None, today: dt.date
) -> None:
    """`InvalidVisit` unless the visit happened between the enrolment's start and today,
    and any role the client sent is the viewer's own."""
    if by_role is not None and by_role != role:
        raise InvalidVisit(
            f"by_role: your account records visits as {role}; leave by_role out or send that.",
            "by_role",
        )
    if date > today:
        raise InvalidVisit(
            f"date: {date.isoformat()} is after today ({today.isoformat()}); record a visit "
            "once it has happened.",
            "date",
        )
    if since is not None and date < since:
        raise InvalidVisit(
            f"date: {date.isoformat()} is before the student's enrolment began "
            f"({since.isoformat()}).",
            "date",
        )


def add_intervention(
    session: Session,
    viewer: Viewer,
    student_id: str,
    *,
    date: dt.date,
    kind: str,
    outcome: str,
    note: str | None = None,
    today: dt.date,
    data_dir: Path | None = None,
    by_role: str | None = None,
) -> InterventionRow:
    """Record something done for a student in the viewer's scope (note stored, not logged).

    The role it is recorded under is the viewer's (`staff_role_of`; a `by_role` sent must
    match it); the date must lie between the student's enrolment (`enrolled_since`, from
    the export in `data_dir`) and `today` (the caller's local date): `InvalidVisit` (422).
    """
    check_individual_access(viewer)
    place = locate(session, student_id)
    viewer.check_can_see(place.school_id, place.class_id)
    role = staff_role_of(viewer)
    since = enrolled_since(session, student_id, data_dir)
    check_visit(date, by_role, role=role, since=since, today=today)
    row = queries.add_intervention(
        session,
        queries.InterventionIn(
            student_id=student_id,
            school_id=place.school_id,
            class_id=place.class_id,
            date=date,
            kind=kind,
            by_role=role,
            outcome=outcome,
            note=note,
        ),
        recorded_by=viewer.user_id,
    )
    logger.info("intervention %d recorded (%s) in school %s", row.id, kind, place.school_id)
    return row


def add_feedback(
    session: Session,
    viewer: Viewer,
    student_id: str,
    *,
    kind: str,
    as_of: dt.date | None = None,
    comment: str | None = None,
) -> FeedbackRow:
    """Record the viewer's verdict on a student's flag (default: the newest scored week)."""
    check_individual_access(viewer)
    place = locate(session, student_id)
    viewer.check_can_see(place.school_id, place.class_id)
    if as_of is None:
        latest = queries.latest_score(session, student_id)
        if latest is None:
            raise StudentNotFound("This student has no weekly score to give feedback on.")
        as_of = latest.as_of
    row = queries.add_feedback(
        session,
        queries.FeedbackIn(student_id=student_id, as_of=as_of, kind=kind, comment=comment),
        user_id=viewer.user_id,
    )
    logger.info("feedback %d recorded (%s) for as_of %s", row.id, kind, as_of)
    return row


# -- the student's rows in the export (attendance calendar, score trend) ------------------

EXPORT_TABLES = ("calendar", "enrolments", "attendance", "grades")


@dataclass(frozen=True)
class GradeRow:
    """One exam result of the student (`grades` table)."""

    school_year: int
    term: int
    exam: str
    subject: str
    score: float | None  # None: missed exam (缺考)
    max_score: float
    date: dt.date


@dataclass(frozen=True)
class StudentExport:
    """One student's rows of the export, from `since` to before `until`.

    `school_days` are the days the student's school was open while the student was
    enrolled there (calendar × enrolment rows in force); `attendance` maps a school day
    to its status (no entry: present); `grades` are every result known before `until`.
    """

    since: dt.date
    until: dt.date
    school_days: tuple[dt.date, ...]
    attendance: dict[dt.date, str]
    grades: tuple[GradeRow, ...]


@dataclass(frozen=True)
class _ByStudent:
    """A table sorted by student, with each student's slice found by binary search."""

    frame: pd.DataFrame
    codes: np.ndarray
    categories: pd.Index

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _ByStudent:
        ids = frame["student_id"].astype("category")
        order = np.argsort(ids.cat.codes.to_numpy(), kind="stable")
        frame = frame.drop(columns="student_id").iloc[order].reset_index(drop=True)
        return cls(frame, ids.cat.codes.to_numpy()[order], ids.cat.categories)

    def rows(self, student_id: str) -> pd.DataFrame:
        try:
            code = self.categories.get_loc(student_id)
        except KeyError:
            return self.frame.iloc[0:0]
        lo, hi = np.searchsorted(self.codes, [code, code + 1])
        return self.frame.iloc[lo:hi]


@dataclass(frozen=True)
class _ExportIndex:
    calendar: dict[str, np.ndarray]  # school -> sorted datetime64[D] school days
    enrolments: _ByStudent
    attendance: _ByStudent
    grades: _ByStudent


_cache_lock = threading.Lock()  # guards _cache and _warming (held briefly)
_build_lock = threading.Lock()  # one index build at a time
_cache: dict[str, tuple[tuple[object, ...], _ExportIndex | None]] = {}


def _export_key(data_dir: Path) -> tuple[object, ...] | None:
    """The files the index is built from, with their sizes and mtimes (None: incomplete)."""
    key: list[object] = []
    for name in EXPORT_TABLES:
        path, _ = locate_table(data_dir, name)
        if path is None:
            return None
        try:
            stat = path.stat()
        except OSError:  # replaced or removed just now
            return None
        key.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(key)


def _typed(path: Path, name: str) -> pd.DataFrame | None:
    """The table's rows that parse (same reading and typing as `baoxue validate`)."""
    read = read_raw_table(path)
    if read.frame is None:
        return None
    columns = check_columns(name, read.frame, path.name)
    if columns.frame is None:
        return None
    table = parse_table(name, columns.frame, path.name)
    assert table.frame is not None and table.bad_rows is not None
    return table.frame[~table.bad_rows]


def _build_index(data_dir: Path) -> _ExportIndex | None:
    started = time.perf_counter()
    frames: dict[str, pd.DataFrame] = {}
    for name in EXPORT_TABLES:
        path, _ = locate_table(data_dir, name)
        frame = None if path is None else _typed(path, name)
        if frame is None:
            logger.warning("export table %s in %s cannot be read for the pages", name, data_dir)
            return None
        frames[name] = frame
    calendar = frames["calendar"]
    days = {
        str(school): np.sort(group["date"].to_numpy().astype("datetime64[D]"))
        for school, group in calendar.groupby("school_id", sort=False)
    }
    index = _ExportIndex(
        calendar=days,
        enrolments=_ByStudent.of(
            frames["enrolments"][["student_id", "school_id", "start_date", "end_date"]]
        ),
        attendance=_ByStudent.of(
            frames["attendance"][["student_id", "date", "status"]].astype({"status": "category"})
        ),
        grades=_ByStudent.of(frames["grades"].astype({"exam": "category", "subject": "category"})),
    )
    logger.info(
        "indexed export %s for the pages: %d attendance and %d grade rows in %.1f s",
        data_dir,
        len(frames["attendance"]),
        len(frames["grades"]),
        time.perf_counter() - started,
    )
    return index


def export_index(data_dir: Path) -> _ExportIndex | None:
    """The export's tables indexed by student, cached until a file changes
    (key: file names, sizes, mtimes); None when the export is missing or unreadable."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return None
    key = _export_key(data_dir)
    if key is None:
        return None
    cache_key = str(data_dir.resolve())
    with _cache_lock:
        cached = _cache.get(cache_key)
    if cached is not None and cached[0] == key:
        return cached[1]
    with _build_lock:  # one read at a time; a page waiting here finds it built
        with _cache_lock:
            cached = _cache.get(cache_key)
        if cached is not None and cached[0] == key:
            return cached[1]
        index = _build_index(data_dir)
        with _cache_lock:
            _cache[cache_key] = (key, index)  # one entry per folder: the old one is dropped
        return index


_warming: set[str] = set()


def warm_export_index(data_dir: Path) -> bool:
    """Build the export index in a background thread unless it is current or being built
    (a home page calls this, so the first student page does not wait for the read).
    Returns whether a build was started."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return False
    key = _export_key(data_dir)
    cache_key = str(data_dir.resolve())
    with _cache_lock:
        cached = _cache.get(cache_key)
        if key is None or (cached is not None and cached[0] == key) or cache_key in _warming:
            return False
        _warming.add(cache_key)

    def build() -> None:
        try:
            export_index(data_dir)
        except Exception:  # a page view will build (and report) it again
            logger.exception("building the export index in the background failed")
        finally:
            with _cache_lock:
                _warming.discard(cache_key)

    threading.Thread(target=build, name="baoxue-export-index", daemon=True).start()
    return True


def _day(value: object) -> dt.date:
    return pd.Timestamp(value).date()  # type: ignore[arg-type]


def student_export(
    data_dir: Path, student_id: str, *, since: dt.date, until: dt.date
) -> StudentExport | None:
    """The student's school days, attendance and grades in `[since, until)`.

    None when the export is missing or unreadable. Only this student's rows leave the
    cache. Callers check the viewer's scope first (`student_record`).
    """
    index = export_index(data_dir)
    if index is None:
        return None
    lo, hi = np.datetime64(since, "D"), np.datetime64(until, "D")
    days: set[np.datetime64] = set()
    for row in index.enrolments.rows(student_id).itertuples(index=False):
        open_days = index.calendar.get(str(row.school_id))
        if open_days is None:
            continue
        start = max(lo, np.datetime64(_day(row.start_date), "D"))
        end = min(hi, np.datetime64(_day(row.end_date), "D") + 1)
        days.update(open_days[(open_days >= start) & (open_days < end)].tolist())
    school_days = tuple(sorted(d if isinstance(d, dt.date) else _day(d) for d in days))
    marks = index.attendance.rows(student_id)
    marks = marks[(marks["date"] >= pd.Timestamp(since)) & (marks["date"] < pd.Timestamp(until))]
    attendance = {_day(d): str(s) for d, s in zip(marks["date"], marks["status"], strict=True)}
    results = index.grades.rows(student_id)
    results = results[results["date"] < pd.Timestamp(until)]
    grades = tuple(
        GradeRow(
            school_year=int(r.school_year),
            term=int(r.term),
            exam=str(r.exam),
            subject=str(r.subject),
            score=None if pd.isna(r.score) else float(r.score),
            max_score=float(r.max_score),
            date=_day(r.date),
        )
        for r in results.sort_values(["date", "subject"]).itertuples(index=False)
    )
    return StudentExport(since, until, school_days, attendance, grades)
