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
from dataclasses import dataclass

from sqlalchemy.orm import Session

from features.catalog import render_reason
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


def locate(session: Session, student_id: str) -> Place:
    """The student's school, class and grade; `StudentNotFound` if we have no record."""
    history = queries.score_history(session, student_id)
    if history:
        last = history[-1]
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
    place = locate(session, student_id)
    viewer.check_can_see(place.school_id, place.class_id)
    history = tuple(queries.score_history(session, student_id))
    current = history[-1] if history else None
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
        interventions=tuple(queries.interventions_for(session, student_id)),
        feedback=tuple(queries.feedback_for(session, student_id=student_id)),
        notes_visible=notes_visible(viewer, place),
    )


def add_intervention(
    session: Session,
    viewer: Viewer,
    student_id: str,
    *,
    date: dt.date,
    kind: str,
    by_role: str,
    outcome: str,
    note: str | None = None,
) -> InterventionRow:
    """Record something done for a student in the viewer's scope (note stored, not logged)."""
    check_individual_access(viewer)
    place = locate(session, student_id)
    viewer.check_can_see(place.school_id, place.class_id)
    row = queries.add_intervention(
        session,
        queries.InterventionIn(
            student_id=student_id,
            school_id=place.school_id,
            class_id=place.class_id,
            date=date,
            kind=kind,
            by_role=by_role,
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
        history = queries.score_history(session, student_id)
        if not history:
            raise StudentNotFound("This student has no weekly score to give feedback on.")
        as_of = history[-1].as_of
    row = queries.add_feedback(
        session,
        queries.FeedbackIn(student_id=student_id, as_of=as_of, kind=kind, comment=comment),
        user_id=viewer.user_id,
    )
    logger.info("feedback %d recorded (%s) for as_of %s", row.id, kind, as_of)
    return row
