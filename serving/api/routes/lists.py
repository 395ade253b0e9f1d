"""`GET /v1/lists/{school_id}`: the weekly at-risk list of a school, or of a teacher's
classes.

Scope: county_admin any school; school_admin their own; teacher their own school, and
only their classes' rows (a `class_id` outside them is refused; without one, the rows
of all their classes, ranked together); researcher no list (individual rows; 403).
Each list read writes one audit row (no student id: the list, by school).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from serving.api.deps import AuditDep, SessionDep, ViewerDep
from serving.api.schemas import ActionOut, ErrorOut, ListRowOut, WeeklyListOut, reason_out
from serving.auth import NotYourStudent, Viewer
from serving.services.students import check_individual_access

router = APIRouter(prefix="/v1/lists", tags=["lists"])


def teacher_classes(viewer: Viewer, school_id: str, class_id: str | None) -> list[str] | None:
    """The classes whose lists a viewer reads (None: the whole school's list).

    Raises `NotYourStudent` when the school or class is outside the viewer's scope.
    """
    check_individual_access(viewer)
    if viewer.role == "county_admin":
        return None if class_id is None else [class_id]
    if viewer.school_id != school_id:
        raise NotYourStudent("This list belongs to another school.")
    if viewer.role == "school_admin":
        return None if class_id is None else [class_id]
    if class_id is not None:
        if class_id not in viewer.class_ids:
            raise NotYourStudent("This class is not one of yours.")
        return [class_id]
    return sorted(viewer.class_ids)


def row_out(row: Any, rank: int) -> ListRowOut:
    """A list row as it goes out (`rank` within what this viewer sees)."""
    return ListRowOut(
        rank=rank,
        student_id=row.student_id,
        class_id=row.class_id,
        grade_level=row.grade_level,
        risk_score=row.risk_score,
        tier=row.tier,
        change=row.change,
        ladder=row.ladder,
        reasons=[reason_out(r) for r in row.reasons],
        actions=[ActionOut(code=a.code, text_zh=a.text_zh, text_en=a.text_en) for a in row.actions],
        visits_this_term=row.visits_this_term,
    )


@router.get(
    "/{school_id}",
    response_model=WeeklyListOut,
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    summary="A school's weekly at-risk list (teachers: their classes)",
)
def read_list(
    session: SessionDep,
    viewer: ViewerDep,
    auditor: AuditDep,
    school_id: Annotated[str, Path(min_length=1, max_length=64)],
    as_of: Annotated[dt.date | None, Query(description="default: the newest week")] = None,
    class_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    capacity: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> WeeklyListOut:
    """The ranked list with tier, change, ladder, reasons, actions and visits this term."""
    from serving.services.weekly_lists import build_list

    with auditor.access(None, school_id):
        classes = teacher_classes(viewer, school_id, class_id)
        if classes is None or len(classes) == 1:
            one = build_list(
                session,
                school_id=school_id,
                as_of=as_of,
                class_id=None if classes is None else classes[0],
                capacity=capacity,
            )
            rows = list(one.rows)
        else:
            lists = [
                build_list(session, school_id=school_id, as_of=as_of, class_id=c, capacity=capacity)
                for c in classes
            ]
            one = lists[0]
            rows = sorted(
                (r for lst in lists for r in lst.rows), key=lambda r: (-r.risk_score, r.student_id)
            )[:capacity]
    return WeeklyListOut(
        school_id=school_id,
        class_id=class_id,
        as_of=one.as_of,
        model_version=one.model_version,
        capacity=capacity if capacity is not None else one.capacity,
        rows=[row_out(r, rank) for rank, r in enumerate(rows, start=1)],
    )
