"""`POST /v1/score`: score students from pushed records (the export's tables as JSON).

The records are checked with the same contract checks as an export folder
(`features.validation.validate_raw`): a 422 names table, row (index in the posted list)
and column. The snapshot, model and reasons are the weekly batch's, so a student's score
here equals the batch's for the same records and as_of.

Scope: county_admin may score anyone; school_admin only students whose current school
is theirs; teacher only students in their classes; researcher nobody (403). When any
scored student is outside the viewer's scope the whole request is refused (403) and
nothing is returned. Each scored student gets an audit row; a refused request gets one
row saying how many students it posted (naming the student and the school when it posted
one of each).

The caller is authenticated before the body is read, and the body is read with a limit
(`serving.score_body_max_mb`, 413 past it): an anonymous or oversized request costs
nothing to refuse (issue 21 item 6).
Tiers follow the weekly lists' capacity rule among the students scored, so they are
given only when every enrolled student in the records was scored (no `student_ids`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.tables import ALL_TABLES, COLUMNS, REQUIRED_TABLES, RawTables
from features.validation import validate_raw
from serving.api.deps import AuditDep, Auditor, ModelDep, SettingsDep, ViewerDep
from serving.api.errors import BODY_UNREADABLE, BodyTooLarge
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
from serving.registry import LoadedModel
from serving.services.scoring import ScoredStudent, score_records
from serving.services.students import check_individual_access
from serving.services.weekly_lists import assign_tiers, school_capacity
from serving.settings import Settings

router = APIRouter(prefix="/v1", tags=["scoring"])
SCORE_PATH = "/v1/score"


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


def posted_students(tables: ScoreTablesIn) -> set[str]:
    """The distinct student ids of the posted `students` rows (for a refusal's audit row)."""
    return {
        str(row["student_id"])
        for row in tables.students
        if isinstance(row.get("student_id"), str | int) and str(row["student_id"])
    }


def posted_school(tables: ScoreTablesIn) -> str | None:
    """The school of the posted enrolment rows when they name exactly one."""
    schools = {str(row.get("school_id")) for row in tables.enrolments if row.get("school_id")}
    return schools.pop() if len(schools) == 1 else None


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


# The body is read by the route (after authentication), so its schema is named here;
# `body_schemas()` puts `ScoreIn` and what it nests into the OpenAPI components.
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreIn"}}},
    }
}


def body_schemas() -> dict[str, Any]:
    """JSON schemas of `ScoreIn` and the models it nests, keyed by component name."""
    schema = ScoreIn.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = schema.pop("$defs", {})
    return {"ScoreIn": schema, **nested}


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (`BodyTooLarge`, 413) as soon as it passes `max_bytes`:
    at once when its declared length does, else while it streams in."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise BodyTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def score_body(request: Request, viewer: ViewerDep, settings: SettingsDep) -> bytes:
    """`POST /v1/score`'s body, read only once `viewer` is authenticated (401 first)."""
    return await read_body(request, settings.serving.score_body_max_mb * 1_000_000)


ScoreBodyDep = Annotated[bytes, Depends(score_body)]


def parse_body(raw: bytes) -> ScoreIn:
    """The posted JSON as `ScoreIn`; the same 422s as FastAPI's own body parsing."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as error:
        raise StarletteHTTPException(400, BODY_UNREADABLE) from error
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": error.msg},
                }
            ]
        ) from error
    try:
        return ScoreIn.model_validate(data)
    except ValidationError as error:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_input=False)]
        raise RequestValidationError(errors) from error


@router.post(
    "/score",
    response_model=ScoreOut,
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        413: {"model": ErrorOut, "description": "the body is over `score_body_max_mb`"},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
    openapi_extra=_BODY_DOC,
    summary="Score students from their records as of a date",
)
async def score(
    viewer: ViewerDep,
    raw: ScoreBodyDep,
    model: ModelDep,
    auditor: AuditDep,
    settings: SettingsDep,
) -> ScoreOut:
    """Risk score, tier, reasons (zh/en), actions and ladder alert for each student.

    The body is `ScoreIn`, read only once the caller is authenticated.
    """
    return await run_in_threadpool(score_posted, raw, viewer, model, auditor, settings)


def score_posted(
    raw: bytes, viewer: Viewer, model: LoadedModel, auditor: Auditor, settings: Settings
) -> ScoreOut:
    """Parse, check the viewer's scope, score; a refusal is audited as one row."""
    body = parse_body(raw)
    posted = posted_students(body.tables)
    named = next(iter(posted)) if len(posted) == 1 else None
    school = posted_school(body.tables) or viewer.school_id
    with auditor.access(named, school, on_success=False) as entry:
        entry.attempted = len(posted)
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
