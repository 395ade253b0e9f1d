"""A student's record, and what staff add to it: interventions and feedback.

Every read (and every attempt, refused or not) writes an audit row naming the viewer,
the student and the endpoint, in its own transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Path

from serving.api.deps import AuditDep, SessionDep, SettingsDep, ViewerDep
from serving.api.schemas import (
    CurrentScoreOut,
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    InterventionIn,
    InterventionOut,
    LadderOut,
    LadderStateOut,
    ReasonOut,
    ScorePointOut,
    StudentOut,
)
from serving.services import students
from serving.services.students import StudentRecord
from serving.storage.queries import WeeklyScoreRow

router = APIRouter(prefix="/v1/students", tags=["students"])

StudentId = Path(min_length=1, max_length=64, description="the export's pseudonymous id")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


def _point(row: WeeklyScoreRow) -> ScorePointOut:
    return ScorePointOut(
        as_of=row.as_of,
        risk_score=row.risk_score,
        tier=row.tier,
        rank_in_school=row.rank_in_school,
        escalation_level=row.escalation_level,
        model_version=row.model_version,
    )


def student_out(record: StudentRecord) -> StudentOut:
    """A student's record as it goes out (notes only when `notes_visible`)."""
    current = record.current
    ladder = record.ladder
    alert = ladder.alert if ladder else None
    return StudentOut(
        student_id=record.student_id,
        school_id=record.place.school_id,
        class_id=record.place.class_id,
        grade_level=record.place.grade_level,
        current=None
        if current is None
        else CurrentScoreOut(
            **_point(current).model_dump(),
            reasons=[ReasonOut(**vars(r)) for r in record.current_reasons],
        ),
        history=[_point(row) for row in record.history],
        ladder=None
        if ladder is None
        else LadderStateOut(
            as_of=ladder.as_of,
            escalation_level=ladder.escalation_level,
            alert=None if alert is None else LadderOut(**vars(alert)),
        ),
        interventions=[
            InterventionOut.of(row, with_note=record.notes_visible) for row in record.interventions
        ],
        feedback=[
            FeedbackOut.of(row, with_comment=record.notes_visible) for row in record.feedback
        ],
        notes_visible=record.notes_visible,
    )


@router.get(
    "/{student_id}",
    response_model=StudentOut,
    responses=_ERRORS,
    summary="A student's current score, history, ladder state, interventions and feedback",
)
def read_student(
    session: SessionDep, viewer: ViewerDep, auditor: AuditDep, student_id: str = StudentId
) -> StudentOut:
    """The student's record as the viewer may see it (audited)."""
    with auditor.access(student_id) as entry:
        record = students.student_record(session, viewer, student_id)
        entry.school_id = record.place.school_id
    return student_out(record)


@router.post(
    "/{student_id}/interventions",
    response_model=InterventionOut,
    status_code=201,
    responses=_ERRORS,
    summary="Record something done for a student (home visit, call, ...)",
)
def add_intervention(
    body: InterventionIn,
    session: SessionDep,
    viewer: ViewerDep,
    auditor: AuditDep,
    settings: SettingsDep,
    student_id: str = StudentId,
) -> InterventionOut:
    """Store an intervention; the note is kept for the school's staff and never logged.

    `by_role` is the viewer's; `date` between the student's enrolment and today (the
    server's local date, as the weekly schedule and the pages use): 422 naming the field.
    """
    with auditor.access(student_id) as entry:
        row = students.add_intervention(
            session,
            viewer,
            student_id,
            **body.model_dump(),
            today=dt.date.today(),
            data_dir=settings.paths.data,
        )
        entry.school_id = row.school_id
    return InterventionOut.of(row, with_note=True)


@router.post(
    "/{student_id}/feedback",
    response_model=FeedbackOut,
    status_code=201,
    responses=_ERRORS,
    summary="Say whether a student's flag was useful",
)
def add_feedback(
    body: FeedbackIn,
    session: SessionDep,
    viewer: ViewerDep,
    auditor: AuditDep,
    student_id: str = StudentId,
) -> FeedbackOut:
    """Store feedback (useful, not_useful, wrongly_flagged) on the student's flag."""
    with auditor.access(student_id):
        row = students.add_feedback(session, viewer, student_id, **body.model_dump())
    return FeedbackOut.of(row, with_comment=True)
