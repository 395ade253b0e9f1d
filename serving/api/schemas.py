"""Request and response shapes of the HTTP API (STYLE §4: separate In and Out shapes).

`...In` is what a client sends, `...Out` what it gets back. Out shapes are built from
the services' rows by explicit constructors, never by dumping a storage row, so a
column can never leak into a response by accident. Notes and comments (free text about a
child) are filled in only where the viewer may read them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.tables import ALL_TABLES, INTERVENTION_KINDS, OUTCOMES, ROLES
from serving.storage.queries import NOTE_MAX, FeedbackRow, InterventionRow, Reason
from serving.storage.tables import FEEDBACK_KINDS

Id = Annotated[str, Field(min_length=1, max_length=64)]
Cell = str | int | float | bool | None
Rows = Annotated[list[dict[str, Cell]], Field(max_length=2_000_000)]
# the four tables every export needs: at least one row each (an empty one is refused)
SomeRows = Annotated[list[dict[str, Cell]], Field(min_length=1, max_length=2_000_000)]

_OUT = ConfigDict(frozen=True)
_IN = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """Every error body."""

    model_config = _OUT

    error: str = Field(description="stable code, e.g. not_your_student")
    message: str = Field(description="a sentence a teacher understands")
    field: Any = Field(None, description="the field at fault, when one is")


# -- auth -------------------------------------------------------------------------------


class TokenOut(BaseModel):
    """A bearer token from the OAuth2 password flow."""

    model_config = _OUT

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the token expires")
    role: str


# -- scoring ----------------------------------------------------------------------------


class ScoreTablesIn(BaseModel):
    """The export's tables (docs/data-contract.md), each a list of row objects.

    Cells are JSON values as a CSV would hold them: dates `YYYY-MM-DD`, booleans
    true/false, numbers as numbers or text. The optional tables may be left out.
    """

    model_config = _IN

    schools: SomeRows
    calendar: SomeRows
    students: SomeRows
    enrolments: SomeRows
    attendance: Rows = []
    grades: Rows = []
    status_events: Rows = []
    interventions: Rows = []
    student_attributes: Rows = []


assert set(ScoreTablesIn.model_fields) == set(ALL_TABLES)


class ScoreIn(BaseModel):
    """Score students from their records as of a date."""

    model_config = _IN

    as_of: dt.date = Field(description="score as of this date (records before it count)")
    student_ids: list[Id] | None = Field(
        None, max_length=100_000, description="only these students (default: every enrolled)"
    )
    tables: ScoreTablesIn


class ReasonOut(BaseModel):
    """One reason behind a score, strongest first."""

    model_config = _OUT

    group: str
    reason_code: str
    feature: str
    value: float | int | str | bool | None = None
    contribution: float = Field(description="log-odds contribution (SHAP)")
    text_zh: str | None = None
    text_en: str | None = None


class ActionOut(BaseModel):
    """A suggested action."""

    model_config = _OUT

    code: str
    text_zh: str
    text_en: str


class LadderOut(BaseModel):
    """The written escalation ladder's alert (1/2/3 days absent without leave)."""

    model_config = _OUT

    level: int
    unexcused_run: int
    action_zh: str
    action_en: str
    due: str = Field(description="today, within_2_days or within_1_hour")


class StudentScoreOut(BaseModel):
    """One student's score with reasons, actions and the ladder alert."""

    model_config = _OUT

    student_id: str
    as_of: dt.date
    school_id: str
    class_id: str
    grade_level: int
    risk_score: float = Field(ge=0, le=1)
    tier: str | None = Field(None, description="high/medium/low by the school's capacity")
    reasons: list[ReasonOut]
    actions: list[ActionOut]
    ladder: LadderOut | None
    model_version: str


class ScoreOut(BaseModel):
    """The scores of a scoring request."""

    model_config = _OUT

    as_of: dt.date
    model_version: str
    students: list[StudentScoreOut]


# -- weekly lists -----------------------------------------------------------------------


class ListRowOut(BaseModel):
    """One row of a weekly at-risk list."""

    model_config = _OUT

    rank: int
    student_id: str
    class_id: str
    grade_level: int
    risk_score: float
    tier: str = Field(description="high, medium or low (the school's capacity rule)")
    change: str = Field(description="new, rising, falling, unchanged or left, since last week")
    ladder: LadderOut | None
    reasons: list[ReasonOut]
    actions: list[ActionOut]
    visits_this_term: int


class WeeklyListOut(BaseModel):
    """A school's (or class's) weekly list."""

    model_config = _OUT

    school_id: str
    class_id: str | None
    as_of: dt.date
    model_version: str
    capacity: int
    rows: list[ListRowOut]


# -- a student's record -----------------------------------------------------------------


class ScorePointOut(BaseModel):
    """One week of a student's score history."""

    model_config = _OUT

    as_of: dt.date
    risk_score: float
    tier: str
    rank_in_school: int
    escalation_level: int
    model_version: str


class CurrentScoreOut(ScorePointOut):
    """The newest weekly score, with its reasons."""

    reasons: list[ReasonOut]


class LadderStateOut(BaseModel):
    """Where the student stands on the escalation ladder in the newest week."""

    model_config = _OUT

    as_of: dt.date
    escalation_level: int = Field(description="0 none, 1/2/3 days absent without leave")
    alert: LadderOut | None = Field(None, description="what the written ladder says to do")


class InterventionIn(BaseModel):
    """Something done for the student (the school and class come from the record, the
    role from the viewer's account; the date lies between the enrolment and today)."""

    model_config = _IN

    date: dt.date = Field(description="when it happened: not before enrolment, not after today")
    kind: Literal[INTERVENTION_KINDS]  # type: ignore[valid-type]
    by_role: Literal[ROLES] | None = Field(  # type: ignore[valid-type]
        None, description="taken from your account; when sent, it must be that role"
    )
    outcome: Literal[OUTCOMES]  # type: ignore[valid-type]
    note: str | None = Field(None, max_length=NOTE_MAX, description="seen by the school's staff")


class InterventionOut(BaseModel):
    """A stored intervention; `note` is null unless the viewer is the school's staff."""

    model_config = _OUT

    id: int
    date: dt.date
    kind: str
    by_role: str
    outcome: str
    note: str | None
    recorded_by: int | None
    created_at: dt.datetime

    @classmethod
    def of(cls, row: InterventionRow, *, with_note: bool) -> InterventionOut:
        return cls(
            id=row.id,
            date=row.date,
            kind=row.kind,
            by_role=row.by_role,
            outcome=row.outcome,
            note=row.note if with_note else None,
            recorded_by=row.recorded_by,
            created_at=row.created_at,
        )


class FeedbackIn(BaseModel):
    """A verdict on the student's flag (default: the newest scored week)."""

    model_config = _IN

    kind: Literal[FEEDBACK_KINDS]  # type: ignore[valid-type]
    as_of: dt.date | None = None
    comment: str | None = Field(None, max_length=NOTE_MAX)


class FeedbackOut(BaseModel):
    """Stored feedback; `comment` is null unless the viewer is the school's staff."""

    model_config = _OUT

    id: int
    as_of: dt.date
    kind: str
    comment: str | None
    user_id: int
    created_at: dt.datetime

    @classmethod
    def of(cls, row: FeedbackRow, *, with_comment: bool) -> FeedbackOut:
        return cls(
            id=row.id,
            as_of=row.as_of,
            kind=row.kind,
            comment=row.comment if with_comment else None,
            user_id=row.user_id,
            created_at=row.created_at,
        )


class StudentOut(BaseModel):
    """A student's record as the viewer may see it."""

    model_config = _OUT

    student_id: str
    school_id: str
    class_id: str | None
    grade_level: int | None
    current: CurrentScoreOut | None
    history: list[ScorePointOut]
    ladder: LadderStateOut | None
    interventions: list[InterventionOut]
    feedback: list[FeedbackOut]
    notes_visible: bool = Field(description="whether notes and comments are shown")


# -- model, admin, health ---------------------------------------------------------------


class ModelOut(BaseModel):
    """The model the service scores with."""

    model_config = _OUT

    name: str
    version: str
    source: str = Field(description="registry, or cache when the registry is unreachable")
    loaded_at: dt.datetime
    trained_at: dt.datetime | None
    data_fingerprint: str | None
    test_metrics: dict[str, float]
    run_id: str | None


class ModelStatusOut(BaseModel):
    """The model holder's status."""

    model_config = _OUT

    ready: bool
    degraded: bool
    source: str | None
    version: str | None
    message: str


class ReloadOut(BaseModel):
    """What a reload did."""

    model_config = _OUT

    changed: bool = Field(description="whether a different version is now in use")
    model: ModelStatusOut


class LivenessOut(BaseModel):
    """Liveness and readiness, as anyone may read them: the status alone."""

    model_config = _OUT

    status: Literal["ok", "degraded", "not_ready"]


class HealthOut(LivenessOut):
    """Liveness and readiness with what stands behind them (logged-in staff only)."""

    database: bool
    model: ModelStatusOut


def ladder_out(alert: Any) -> LadderOut | None:
    """A ladder alert (`models.reasons.LadderAlert`) as it goes out."""
    if alert is None:
        return None
    return LadderOut(
        level=alert.level,
        unexcused_run=alert.unexcused_run,
        action_zh=alert.action_zh,
        action_en=alert.action_en,
        due=alert.due,
    )


def action_out(action: Any) -> ActionOut:
    """A suggested action (`models.reasons.Action`) as it goes out."""
    return ActionOut(code=action.code, text_zh=action.text_zh, text_en=action.text_en)


def reason_out(reason: Reason | Any) -> ReasonOut:
    """A stored or freshly computed reason as it goes out."""
    return ReasonOut(
        group=reason.group,
        reason_code=reason.reason_code,
        feature=reason.feature,
        value=reason.value,
        contribution=reason.contribution,
        text_zh=getattr(reason, "text_zh", None),
        text_en=getattr(reason, "text_en", None),
    )
