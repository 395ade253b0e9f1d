"""Home-visit cases (包保责任人, 一生一策, 销号清零): plain functions over a Session and a Viewer.

- `sync_cases(session, as_of, now)` opens a case for every student of that week's stored
  scores who is in the high tier or has a ladder alert, unless the student already has an
  open case (a ladder alert on an open case of a lower level records an escalation), or
  whose case was closed on or after that week (a later week that still flags them reopens). Each
  case gets a follow-up due time from the written ladder (DOMAIN.md): level 1 contact the
  family today (within a day), level 2 home visit within 2 days, level 3 report within the
  hour; high tier without an alert: home visit within 7 days. Due times and levels live in
  the case's history (`case_events`, kind `due`), so the schema is unchanged.
- The owner (包保责任人) defaults to the class's homeroom teacher when such a user exists,
  else none; the plan (一生一策) starts as a short text from the ladder or the tier.
- `overdue(session, viewer, now)`: open cases the viewer may see whose due time has passed
  with no intervention recorded for the student since the case opened.
- `assign_owner` and `close_case` (销号: returned, transferred, closed_other, with a reason)
  are for the county admin or the school admin of the case's school; `update_plan` for
  anyone who may see the student. Every change is kept in the case's history.
- `sync_latest(session, now)`: what the weekly batch can call after storing a week.

Nothing here logs student ids, plans or reasons; only counts.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving.auth import Forbidden, NotYourStudent, Viewer
from serving.storage import queries
from serving.storage.queries import NOTE_MAX, CaseEventRow, CaseIn, CaseRow, WeeklyScoreRow
from serving.storage.tables import Case, CaseEvent, Intervention, User, WeeklyScore, utcnow

logger = logging.getLogger(__name__)

# ladder level -> how long the follow-up may take (0: high tier without an alert)
FOLLOW_UP = {
    0: dt.timedelta(days=7),
    1: dt.timedelta(days=1),
    2: dt.timedelta(days=2),
    3: dt.timedelta(hours=1),
}
CLOSE_STATUSES = ("returned", "transferred", "closed_other")
CONFIRMED_AFTER = dt.timedelta(days=7)  # a suspected dropout not back within a week
PLAN_BY_LEVEL = {
    0: "一生一策：7天内家访，了解家庭和学习情况，确定包保责任人和帮扶措施。",
    1: "一生一策：今天联系家长，了解缺课原因并报告学校。",
    2: "一生一策：2天内学校上门家访，了解原因，做好劝返准备。",
    3: "一生一策：按疑似辍学处理，1小时内上报学校和乡镇，启动劝返。",
}


class CaseNotFound(LookupError):
    """No case with that id."""

    code = "case_not_found"


class InvalidCaseChange(ValueError):
    """A change the case cannot take (closed already, bad status, empty reason, ...)."""

    code = "invalid_case_change"


@dataclass(frozen=True)
class CaseView:
    """A case with what the pages show next to it."""

    case: CaseRow
    class_id: str | None
    level: int
    due: dt.datetime | None
    owner_name: str | None
    closed_by_name: str | None

    @property
    def is_open(self) -> bool:
        return self.case.status == "open"


# -- reading ----------------------------------------------------------------------------


def _due_events(session: Session, case_ids: list[int]) -> dict[int, tuple[int, dt.datetime]]:
    """Each case's newest (level, due) from its history."""
    out: dict[int, tuple[int, dt.datetime]] = {}
    if not case_ids:
        return out
    query = (
        select(CaseEvent)
        .where(CaseEvent.case_id.in_(case_ids), CaseEvent.kind == "due")
        .order_by(CaseEvent.id)
    )
    for event in session.scalars(query):
        detail = event.detail or {}
        due = dt.datetime.fromisoformat(str(detail.get("due")))
        out[event.case_id] = (int(detail.get("level", 0)), due)
    return out


def _classes(session: Session, student_ids: list[str]) -> dict[str, str]:
    """Each student's class in their newest stored score."""
    if not student_ids:
        return {}
    newest = (
        select(WeeklyScore.student_id, func.max(WeeklyScore.as_of).label("as_of"))
        .where(WeeklyScore.student_id.in_(student_ids))
        .group_by(WeeklyScore.student_id)
        .subquery()
    )
    query = select(WeeklyScore.student_id, WeeklyScore.class_id).join(
        newest,
        (WeeklyScore.student_id == newest.c.student_id) & (WeeklyScore.as_of == newest.c.as_of),
    )
    return {str(s): str(c) for s, c in session.execute(query)}


def _names(session: Session, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    query = select(User.id, User.username).where(User.id.in_(user_ids))
    return {int(i): str(n) for i, n in session.execute(query)}


def _views(session: Session, rows: list[CaseRow]) -> list[CaseView]:
    dues = _due_events(session, [r.id for r in rows])
    classes = _classes(session, list({r.student_id for r in rows}))
    users = {u for r in rows for u in (r.owner, r.closed_by) if u is not None}
    names = _names(session, users)
    return [
        CaseView(
            case=r,
            class_id=classes.get(r.student_id),
            level=dues.get(r.id, (0, None))[0],
            due=dues.get(r.id, (0, None))[1],
            owner_name=names.get(r.owner) if r.owner is not None else None,
            closed_by_name=names.get(r.closed_by) if r.closed_by is not None else None,
        )
        for r in rows
    ]


def visible_cases(
    session: Session, viewer: Viewer, status: str | None = "open", school_id: str | None = None
) -> list[CaseView]:
    """Cases the viewer may see (county: all; school admin: own school; teacher: own
    classes; researcher: `Forbidden`), newest first."""
    if viewer.role == "researcher":
        raise Forbidden("Researchers see aggregates only, not individual students.")
    if viewer.role != "county_admin":
        school_id = viewer.school_id or ""
    rows = queries.cases_for(session, school_id=school_id, status=status)
    return [v for v in _views(session, rows) if viewer.can_see(v.case.school_id, v.class_id)]


def get_case(session: Session, viewer: Viewer, case_id: int) -> CaseView:
    """One case, scoped: `CaseNotFound`, `NotYourStudent` or `Forbidden` (researcher)."""
    row = session.get(Case, case_id)
    if row is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    view = _views(session, [CaseRow.model_validate(row)])[0]
    viewer.check_can_see(view.case.school_id, view.class_id)
    return view


def history(session: Session, viewer: Viewer, case_id: int) -> list[CaseEventRow]:
    """A case's history, oldest first (scoped like `get_case`)."""
    get_case(session, viewer, case_id)
    return queries.case_history(session, case_id)


def _followed_up(session: Session, cases: list[CaseView]) -> set[int]:
    """Ids of cases with an intervention recorded for the student since the case opened."""
    done = set()
    for view in cases:
        since = view.case.opened_at.date()
        found = session.scalar(
            select(func.count())
            .select_from(Intervention)
            .where(Intervention.student_id == view.case.student_id, Intervention.date >= since)
        )
        if found:
            done.add(view.case.id)
    return done


def overdue(session: Session, viewer: Viewer, now: dt.datetime | None = None) -> list[CaseView]:
    """Open cases the viewer may see, past their due time with no follow-up recorded;
    most urgent (highest level, then earliest due) first."""
    now = now or utcnow()
    late = [v for v in visible_cases(session, viewer) if v.due is not None and v.due < now]
    done = _followed_up(session, late)
    late = [v for v in late if v.case.id not in done]
    return sorted(late, key=lambda v: (-v.level, v.due or now, v.case.id))


# -- opening cases from a week's scores ---------------------------------------------------


def _homeroom_teachers(session: Session) -> dict[tuple[str, str], int]:
    """(school, class) -> the id of its homeroom teacher (lowest id if several)."""
    owners: dict[tuple[str, str], int] = {}
    query = (
        select(User)
        .where(User.active.is_(True), User.role == "teacher")
        .where(User.staff_role == "homeroom_teacher")
        .order_by(User.id)
    )
    for user in session.scalars(query):
        for held in user.classes:
            owners.setdefault((user.school_id or "", held.class_id), user.id)
    return owners


def _add_due(
    session: Session, case_id: int, level: int, since: dt.datetime, user_id: int | None = None
) -> None:
    due = since + FOLLOW_UP[level]
    session.add(
        CaseEvent(
            case_id=case_id,
            kind="due",
            user_id=user_id,
            detail={"level": level, "due": due.isoformat()},
        )
    )


def needs_case(score: WeeklyScoreRow) -> bool:
    """High tier, or a ladder alert (escalation level 1 or more)."""
    return score.tier == "high" or score.escalation_level > 0


@dataclass(frozen=True)
class SyncResult:
    opened: int
    escalated: int


def sync_cases(
    session: Session, as_of: dt.date | None = None, now: dt.datetime | None = None
) -> SyncResult:
    """Open (or escalate) cases from the stored scores of `as_of` (default: the newest
    week). Idempotent: a student with an open case gets no second one, and a case closed
    on or after `as_of` is not reopened from that week's (older) scores."""
    now = now or utcnow()
    as_of = as_of or queries.latest_as_of(session)
    if as_of is None:
        return SyncResult(0, 0)
    scores = [s for s in queries.scores_for(session, as_of) if needs_case(s)]
    open_cases = {r.student_id: r for r in queries.cases_for(session, status="open")}
    # closed (销号) on or after this week: the week's scores are older news
    cutoff = dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
    closed_since = set(
        session.scalars(select(Case.student_id).where(Case.closed_at >= cutoff)).all()
    )
    levels = _due_events(session, [r.id for r in open_cases.values()])
    owners = _homeroom_teachers(session)
    opened = escalated = 0
    for score in scores:
        level = min(score.escalation_level, 3)
        existing = open_cases.get(score.student_id)
        if existing is not None:
            if level > levels.get(existing.id, (0, now))[0]:
                _add_due(session, existing.id, level, now)
                escalated += 1
            continue
        if score.student_id in closed_since:
            continue
        row = queries.open_case(
            session,
            CaseIn(
                student_id=score.student_id,
                school_id=score.school_id,
                reason="ladder" if level > 0 else "high_tier",
                owner=owners.get((score.school_id, score.class_id)),
                plan=PLAN_BY_LEVEL[level],
            ),
        )
        # the case opens now, not at the row's default clock, so due times line up
        session.get(Case, row.id).opened_at = now  # type: ignore[union-attr]
        _add_due(session, row.id, level, now)
        open_cases[score.student_id] = row
        opened += 1
    session.flush()
    logger.info("cases for %s: %d opened, %d escalated", as_of, opened, escalated)
    return SyncResult(opened, escalated)


def sync_latest(session: Session, now: dt.datetime | None = None) -> SyncResult:
    """For the weekly batch: open the cases of the newest stored week."""
    return sync_cases(session, None, now)


# -- changing a case ------------------------------------------------------------------------


def _may_manage(viewer: Viewer, school_id: str) -> None:
    if viewer.role == "county_admin":
        return
    if viewer.role == "school_admin" and viewer.school_id == school_id:
        return
    raise Forbidden("Only the county or the school's administrator may do this.")


def assign_owner(session: Session, viewer: Viewer, case_id: int, owner: int) -> CaseView:
    """Name the responsible adult (包保责任人): an active user of the case's school."""
    view = get_case(session, viewer, case_id)
    _may_manage(viewer, view.case.school_id)
    user = session.get(User, owner)
    if user is None or not user.active or user.school_id != view.case.school_id:
        raise InvalidCaseChange("The responsible adult must be staff of the student's school.")
    queries.update_case(session, case_id, viewer.user_id, owner=owner)
    return get_case(session, viewer, case_id)


def update_plan(session: Session, viewer: Viewer, case_id: int, plan: str) -> CaseView:
    """Replace the plan (一生一策); anyone who may see the student, while the case is open."""
    view = get_case(session, viewer, case_id)
    plan = plan.strip()
    if not view.is_open:
        raise InvalidCaseChange("This case is closed.")
    if not plan or len(plan) > NOTE_MAX:
        raise InvalidCaseChange(f"A plan has 1 to {NOTE_MAX} characters.")
    queries.update_case(session, case_id, viewer.user_id, plan=plan)
    return get_case(session, viewer, case_id)


def close_case(
    session: Session, viewer: Viewer, case_id: int, status: str, reason: str
) -> CaseView:
    """Close a case one by one (销号): county admin or the school's admin, with a reason."""
    view = get_case(session, viewer, case_id)
    _may_manage(viewer, view.case.school_id)
    reason = reason.strip()
    if not view.is_open:
        raise InvalidCaseChange("This case is closed already.")
    if status not in CLOSE_STATUSES:
        raise InvalidCaseChange(f"A case closes as one of {', '.join(CLOSE_STATUSES)}.")
    if not reason or len(reason) > NOTE_MAX:
        raise InvalidCaseChange(f"Closing needs a reason of 1 to {NOTE_MAX} characters.")
    queries.close_case(session, case_id, status, viewer.user_id, reason)
    return get_case(session, viewer, case_id)


def is_confirmed_dropout(view: CaseView, now: dt.datetime) -> bool:
    """A level-3 case still open a week after it opened (辍学, for the roster)."""
    return view.is_open and view.level >= 3 and now - view.case.opened_at >= CONFIRMED_AFTER


__all__ = [
    "CaseNotFound",
    "CaseView",
    "InvalidCaseChange",
    "NotYourStudent",
    "assign_owner",
    "close_case",
    "get_case",
    "history",
    "overdue",
    "sync_cases",
    "sync_latest",
    "update_plan",
    "visible_cases",
]
