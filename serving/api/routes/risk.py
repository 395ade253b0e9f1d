"""`POST /v1/score`: score students from pushed records (the export's tables as JSON).

The records are checked with the same contract checks as an export folder
(`features.validation.validate_raw`): a 422 names table, row (index in the posted list)
and column. The snapshot, model and reasons are the weekly batch's, so a student's score
here equals the batch's for the same records and as_of.

Scope: county_admin may score anyone; school_admin only students whose current school
is theirs; teacher only students in their classes; researcher nobody (403). When any
scored student is outside the viewer's scope the whole request is refused (403) and
nothing is returned. Each scored student gets an audit row; a refusal gets one per student
of the posted `students` table (one without a student when it has none).
Tiers follow the weekly lists' capacity rule among the students scored, so they are
given only when every enrolled student in the records was scored (no `student_ids`).
"""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter

from features.tables import ALL_TABLES, COLUMNS, REQUIRED_TABLES, RawTables
from features.validation import validate_raw
from serving.api.deps import AuditDep, ModelDep, SettingsDep, ViewerDep
from serving.api.schemas import (
    ErrorOut,
    ScoreIn,
    ScoreOut,
    ScoreTablesIn,
    StudentScoreOut,
    action_out,
    ladder_out,
    reason_out,
)
from serving.auth import NotYourStudent, Viewer
from serving.services.scoring import ScoredStudent, score_records
from serving.services.students import check_individual_access
from serving.services.weekly_lists import assign_tiers, school_capacity

router = APIRouter(prefix="/v1", tags=["scoring"])
AUDITED_MAX = 10_000  # refused students named in the audit, per request


def records_to_tables(tables: ScoreTablesIn) -> RawTables:
    """Posted rows -> validated `RawTables`; `InputTableError` (422) naming what is wrong."""
    raw: dict[str, pd.DataFrame | None] = {}
    for name in ALL_TABLES:
        rows = getattr(tables, name)
        if rows:
            raw[name] = pd.DataFrame.from_records(rows)
        elif name in REQUIRED_TABLES:
            raw[name] = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS[name]})
        else:
            raw[name] = None
    return validate_raw(raw, {name: name for name in ALL_TABLES}).tables


def posted_students(tables: ScoreTablesIn, limit: int = AUDITED_MAX) -> list[str]:
    """The distinct student ids of the posted `students` rows (at most `limit`), for the
    audit rows of a refused request."""
    ids = dict.fromkeys(
        str(row["student_id"])[:64]
        for row in tables.students
        if isinstance(row.get("student_id"), str | int) and str(row["student_id"])
    )
    return list(ids)[:limit]


def check_scope(viewer: Viewer, scored: list[ScoredStudent]) -> None:
    """`NotYourStudent` (403) unless the viewer may see every scored student."""
    outside = sum(not viewer.can_see(s.school_id, s.class_id) for s in scored)
    if outside:
        raise NotYourStudent(
            f"{outside} of the {len(scored)} students scored are not in your school or "
            "classes; send only your own students' records (or name them in student_ids)."
        )


def score_out(student: ScoredStudent, tier: str | None = None) -> StudentScoreOut:
    """A scored student as it goes out."""
    return StudentScoreOut(
        student_id=student.student_id,
        as_of=student.as_of,
        school_id=student.school_id,
        class_id=student.class_id,
        grade_level=student.grade_level,
        risk_score=student.risk_score,
        tier=tier,
        reasons=[reason_out(r) for r in student.reasons],
        actions=[action_out(a) for a in student.actions],
        ladder=ladder_out(student.ladder),
        model_version=student.model_version,
    )


def tiers_of(scored: list[ScoredStudent], capacity_share: float) -> dict[str, str]:
    """Tiers by each school's capacity rule among the students scored.

    Only meaningful when everyone enrolled in the records was scored (no `student_ids`):
    then, for records holding a whole school, they equal the weekly batch's tiers.
    """
    by_school: dict[str, list[tuple[str, float]]] = {}
    for s in scored:
        by_school.setdefault(s.school_id, []).append((s.student_id, s.risk_score))
    tiers: dict[str, str] = {}
    for students in by_school.values():
        places = school_capacity(len(students), capacity=None, capacity_share=capacity_share)
        tiers.update(assign_tiers(students, places))
    return tiers


@router.post(
    "/score",
    response_model=ScoreOut,
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
    summary="Score students from their records as of a date",
)
def score(
    body: ScoreIn, viewer: ViewerDep, model: ModelDep, auditor: AuditDep, settings: SettingsDep
) -> ScoreOut:
    """Risk score, tier, reasons (zh/en), actions and ladder alert for each student."""
    with auditor.access(None, viewer.school_id, on_success=False) as entry:
        entry.attempted = posted_students(body.tables)
        check_individual_access(viewer)
        tables = records_to_tables(body.tables)
        scored = score_records(model, tables, as_of=body.as_of, student_ids=body.student_ids)
        check_scope(viewer, scored)
    auditor.record([s.student_id for s in scored])
    tiers = {} if body.student_ids else tiers_of(scored, settings.training.capacity_share)
    return ScoreOut(
        as_of=body.as_of,
        model_version=model.version,
        students=[score_out(s, tiers.get(s.student_id)) for s in scored],
    )
