"""`GET /v1/lists/{school_id}`: the weekly at-risk list of a school, or of a teacher's
classes.

Scope: county_admin any school; school_admin their own; teacher their own school, and
only their classes' rows (a `class_id` outside them is refused; without one, the rows
of all their classes, in the school list's order); researcher no list (its rows are
individual students; 403). Each list read writes one audit row (no student id: the list,
by school), refused attempts too.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query

from serving.api.deps import AuditDep, SessionDep, ViewerDep
from serving.api.schemas import (
    ErrorOut,
    ListRowOut,
    WeeklyListOut,
    action_out,
    ladder_out,
    reason_out,
)
from serving.auth import NotYourStudent, Viewer
from serving.services.students import check_individual_access
from serving.services.weekly_lists import ListRow, build_list

router = APIRouter(prefix="/v1/lists", tags=["lists"])


def visible_classes(viewer: Viewer, school_id: str, class_id: str | None) -> set[str] | None:
    """The classes whose rows the viewer reads (None: every class of the school).

    Raises `Forbidden` (researcher) or `NotYourStudent` (another school, another class).
    """
    check_individual_access(viewer)
    if viewer.role != "county_admin" and viewer.school_id != school_id:
        raise NotYourStudent("This list belongs to another school.")
    if viewer.role != "teacher":
        return None if class_id is None else {class_id}
    if class_id is not None and class_id not in viewer.class_ids:
        raise NotYourStudent("This class is not one of yours.")
    return {class_id} if class_id is not None else set(viewer.class_ids)


def row_out(row: ListRow, rank: int) -> ListRowOut:
    """A list row as it goes out (`rank` within the rows this viewer sees)."""
    return ListRowOut(
        rank=rank,
        student_id=row.student_id,
        class_id=row.class_id,
        grade_level=row.grade_level,
        risk_score=row.risk_score,
        tier=row.tier,
        change=row.change,
        ladder=ladder_out(row.ladder),
        reasons=[reason_out(r) for r in row.reasons],
        actions=[action_out(a) for a in row.actions],
        visits_this_term=row.visits_this_term,
    )


@router.get(
    "/{school_id}",
    response_model=WeeklyListOut,
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    summary="A school's weekly at-risk list (teachers: their classes' rows)",
)
def read_list(
    session: SessionDep,
    viewer: ViewerDep,
    auditor: AuditDep,
    school_id: Annotated[str, Path(min_length=1, max_length=64)],
    as_of: Annotated[dt.date | None, Query(description="default: the newest week")] = None,
    class_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    capacity: Annotated[int | None, Query(ge=1, le=10_000, description="high-tier places")] = None,
) -> WeeklyListOut:
    """The ranked list with tier, change, ladder, reasons, actions and visits this term."""
    with auditor.access(None, school_id):
        classes = visible_classes(viewer, school_id, class_id)
        weekly = build_list(session, school_id=school_id, as_of=as_of, capacity=capacity)
    rows = [r for r in weekly.rows if classes is None or r.class_id in classes]
    return WeeklyListOut(
        school_id=school_id,
        class_id=class_id,
        as_of=weekly.as_of,
        model_version=weekly.model_version,
        capacity=weekly.capacity,
        rows=[row_out(r, rank) for rank, r in enumerate(rows, start=1)],
    )
