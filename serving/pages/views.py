"""What each page shows, built from the same services as the JSON API (no HTTP here).

- `teacher_week`: a teacher's classes in the newest weekly list (`weekly_lists.build_list`,
  the school's order and tiers), split into ladder alerts (3 days absent on top) and the
  ranked list, each row with its last contact and home visits this semester; and each
  class's home-visit progress against the minimum (half the class, DOMAIN.md).
- `student_page`: `students.student_record` plus a server-side SVG chart of the history,
  the attendance calendar of the school year and the score trend per subject (from the
  export, `students.student_export`), and the student's open case.
- `school_overview`: a principal's counts per tier per class, open ladder alerts, and
  home visits per staff member against their minimum (homeroom: half the class,
  subject teacher: 15, principal: 40).
- `county_dashboard`: schools side by side, the dropout roster (辍学生花名册) from the
  cases service, and an SVG of high-tier counts per week; `case_page`: one case.

Home visits count distinct students visited at home since the semester began
(`weekly_lists.term_start` of the list's week), up to today.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from features.feeds import FeedWarning
from serving.auth import Viewer
from serving.services import cases, students
from serving.services.students import StudentRecord
from serving.services.users import list_users
from serving.services.weekly_lists import ListNotFound, ListRow, build_list, term_start
from serving.storage import queries
from serving.storage.queries import InterventionRow, WeeklyScoreRow
from serving.storage.tables import Intervention, WeeklyScore, utcnow

HOME_VISIT = "home_visit"
SUBJECT_TEACHER_MINIMUM = 15
PRINCIPAL_MINIMUM = 40


def homeroom_minimum(class_size: int) -> int:
    """At least half of the class each semester (rounded up)."""
    return math.ceil(class_size / 2)


@dataclass(frozen=True)
class WeekRow:
    """A list row with what the teacher has done so far."""

    row: ListRow
    last_contact: InterventionRow | None
    home_visits: int


@dataclass(frozen=True)
class ClassProgress:
    """Home visits in one class this semester against the minimum."""

    class_id: str
    size: int
    need: int
    done: int

    @property
    def left(self) -> int:
        return max(self.need - self.done, 0)


@dataclass(frozen=True)
class TeacherWeek:
    """A teacher's page for one week."""

    as_of: dt.date
    semester_start: dt.date
    class_ids: tuple[str, ...]
    alerts: tuple[WeekRow, ...]
    ranked: tuple[WeekRow, ...]
    left: tuple[WeekRow, ...]
    progress: tuple[ClassProgress, ...]


def _week_row(session: Session, row: ListRow, since: dt.date) -> WeekRow:
    done = queries.interventions_for(session, row.student_id)
    visits = sum(1 for i in done if i.kind == HOME_VISIT and i.date >= since)
    return WeekRow(row, done[0] if done else None, visits)


def class_progress(
    session: Session, school_id: str, class_id: str, as_of: dt.date, since: dt.date
) -> ClassProgress:
    """Distinct students of the class visited at home since `since`, against half the class."""
    ids = [r.student_id for r in queries.scores_for(session, as_of, school_id, class_id)]
    counts = queries.visits_this_term(session, ids, since)
    done = sum(1 for n in counts.values() if n > 0)
    return ClassProgress(class_id, len(ids), homeroom_minimum(len(ids)), done)


def teacher_week(session: Session, viewer: Viewer) -> TeacherWeek:
    """The newest week's list of the teacher's classes; `ListNotFound` when none is stored."""
    school_id = viewer.school_id or ""
    weekly = build_list(session, school_id=school_id, as_of=None)
    since = term_start(weekly.as_of)
    mine = [r for r in weekly.rows if r.class_id in viewer.class_ids]
    rows = [_week_row(session, r, since) for r in mine]
    classes = tuple(sorted(viewer.class_ids))
    return TeacherWeek(
        as_of=weekly.as_of,
        semester_start=since,
        class_ids=classes,
        alerts=tuple(w for w in rows if w.row.ladder is not None and w.row.change != "left"),
        ranked=tuple(w for w in rows if w.row.ladder is None and w.row.change != "left"),
        left=tuple(w for w in rows if w.row.change == "left"),
        progress=tuple(class_progress(session, school_id, c, weekly.as_of, since) for c in classes),
    )


# -- the risk chart ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    as_of: dt.date
    risk_score: float
    tier: str


@dataclass(frozen=True)
class Chart:
    """An SVG line chart in a `width` × `height` viewBox (drawn by the template)."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    points: tuple[ChartPoint, ...]
    path: str
    y_ticks: tuple[tuple[float, str], ...]
    x_labels: tuple[tuple[float, str], ...]


def risk_chart(history: Sequence[WeeklyScoreRow], width: int = 640, height: int = 220) -> Chart:
    """Risk score per week, oldest on the left; the y axis runs from 0 to a round maximum."""
    left, right, top, bottom = 44, width - 16, 12, height - 28
    top_value = max([r.risk_score for r in history] + [0.1])
    step = 0.05 if top_value <= 0.2 else 0.1 if top_value <= 0.5 else 0.2
    y_max = min(math.ceil(round(top_value / step, 9)) * step, 1.0) or step

    def y_of(value: float) -> float:
        return round(bottom - (bottom - top) * value / y_max, 1)

    n = len(history)

    def x_of(i: int) -> float:
        return round(left + (right - left) * (i / (n - 1) if n > 1 else 0.5), 1)

    points = tuple(
        ChartPoint(x_of(i), y_of(r.risk_score), r.as_of, r.risk_score, r.tier)
        for i, r in enumerate(history)
    )
    path = " ".join(f"{'M' if i == 0 else 'L'}{p.x},{p.y}" for i, p in enumerate(points))
    ticks = []
    value = 0.0
    while value <= y_max + 1e-9:
        ticks.append((y_of(value), f"{round(value * 100):d}%"))
        value += step
    every = max(1, math.ceil(n / 6))
    x_labels = tuple(
        (p.x, p.as_of.strftime("%m-%d")) for i, p in enumerate(points) if i % every == 0
    )
    return Chart(width, height, left, right, top, bottom, points, path, tuple(ticks), x_labels)


# -- the attendance calendar and the score trend -----------------------------------------

# attendance status -> the four colours of the calendar
DAY_STATES = ("present", "late", "leave", "unexcused")
_STATE_OF = {
    "present": "present",
    "late": "late",
    "leave_sick": "leave",
    "leave_personal": "leave",
    "absent_unexcused": "unexcused",
}


def school_year_start(on: dt.date) -> dt.date:
    """1 August of the school year `on` falls in (enrolment rows run August to July)."""
    return dt.date(on.year if on.month >= 8 else on.year - 1, 8, 1)


@dataclass(frozen=True)
class DayCell:
    day: dt.date | None  # None: padding before the 1st / after the last day of the month
    state: str | None  # one of DAY_STATES; "closed" when not a school day


@dataclass(frozen=True)
class MonthGrid:
    month: dt.date  # first of the month
    weeks: tuple[tuple[DayCell, ...], ...]  # Monday..Sunday


@dataclass(frozen=True)
class AttendanceCalendar:
    """Every school day of the school year up to the newest week, month by month."""

    since: dt.date
    until: dt.date
    months: tuple[MonthGrid, ...]
    counts: dict[str, int]
    school_days: int


def attendance_calendar(export: students.StudentExport) -> AttendanceCalendar | None:
    """The heat map's months (None when the student had no school day in the window)."""
    if not export.school_days:
        return None
    open_days = set(export.school_days)
    states = {d: _STATE_OF.get(export.attendance.get(d, "present"), "present") for d in open_days}
    first, last = export.school_days[0], export.school_days[-1]
    months = []
    month = first.replace(day=1)
    while month <= last:
        following = (month + dt.timedelta(days=32)).replace(day=1)
        cells = [DayCell(None, None)] * month.weekday()
        day = month
        while day < following:
            inside = export.since <= day < export.until
            cells.append(DayCell(day if inside else None, states.get(day, "closed")))
            day += dt.timedelta(days=1)
        cells += [DayCell(None, None)] * (-len(cells) % 7)
        weeks = tuple(tuple(cells[i : i + 7]) for i in range(0, len(cells), 7))
        months.append(MonthGrid(month, weeks))
        month = following
    counts = Counter(states.values())
    return AttendanceCalendar(
        since=export.since,
        until=export.until,
        months=tuple(months),
        counts={s: counts.get(s, 0) for s in DAY_STATES},
        school_days=len(open_days),
    )


@dataclass(frozen=True)
class TrendPoint:
    x: float
    y: float
    grade: students.GradeRow
    share: float


@dataclass(frozen=True)
class SubjectTrend:
    """One subject's results as a share of full marks, oldest exam on the left."""

    subject: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    points: tuple[TrendPoint, ...]
    missed: tuple[students.GradeRow, ...]
    path: str
    y_ticks: tuple[tuple[float, str], ...]
    x_labels: tuple[tuple[float, str], ...]
    pass_y: float  # 60% of full marks (及格线)

    @property
    def latest(self) -> TrendPoint | None:
        return self.points[-1] if self.points else None


SUBJECT_ORDER = ("chinese", "math", "english", "physics", "chemistry")


def score_trends(
    grades: Sequence[students.GradeRow], width: int = 320, height: int = 150
) -> tuple[SubjectTrend, ...]:
    """A small line chart per subject: score / max_score per exam, 0-100%."""
    left, right, top, bottom = 38, width - 10, 10, height - 24
    by_subject: dict[str, list[students.GradeRow]] = {}
    for g in sorted(grades, key=lambda g: (g.date, g.subject)):
        by_subject.setdefault(g.subject, []).append(g)

    def y_of(share: float) -> float:
        return round(bottom - (bottom - top) * min(max(share, 0.0), 1.0), 1)

    trends = []
    order = sorted(
        by_subject,
        key=lambda s: (SUBJECT_ORDER.index(s) if s in SUBJECT_ORDER else 99, s),
    )
    for subject in order:
        exams = by_subject[subject]
        n = len(exams)

        def x_of(i: int, n: int = n) -> float:
            return round(left + (right - left) * (i / (n - 1) if n > 1 else 0.5), 1)

        points = tuple(
            TrendPoint(x_of(i), y_of(g.score / g.max_score), g, g.score / g.max_score)
            for i, g in enumerate(exams)
            if g.score is not None
        )
        path = " ".join(f"{'M' if i == 0 else 'L'}{p.x},{p.y}" for i, p in enumerate(points))
        every = max(1, math.ceil(n / 4))
        x_labels = tuple(
            (x_of(i), g.date.strftime("%y-%m")) for i, g in enumerate(exams) if i % every == 0
        )
        trends.append(
            SubjectTrend(
                subject=subject,
                width=width,
                height=height,
                left=left,
                right=right,
                top=top,
                bottom=bottom,
                points=points,
                missed=tuple(g for g in exams if g.score is None),
                path=path,
                y_ticks=tuple((y_of(v), f"{round(v * 100)}%") for v in (0.0, 0.5, 1.0)),
                x_labels=x_labels,
                pass_y=y_of(0.6),
            )
        )
    return tuple(trends)


@dataclass(frozen=True)
class OpenCase:
    """The student's open case as the student page shows it."""

    view: cases.CaseView
    overdue: bool
    followed_up: bool


def open_case(
    session: Session, viewer: Viewer, record: StudentRecord, now: dt.datetime
) -> OpenCase | None:
    """The newest open case of the student (scoped like `cases.get_case`), if any."""
    rows = queries.cases_for(session, student_id=record.student_id, status="open")
    if not rows:
        return None
    view = cases.get_case(session, viewer, rows[0].id)
    since = view.case.opened_at.date()
    followed_up = any(i.date >= since for i in record.interventions)
    late = view.due is not None and view.due < now and not followed_up
    return OpenCase(view, late, followed_up)


@dataclass(frozen=True)
class StudentPage:
    record: StudentRecord
    chart: Chart | None
    feedback_kinds: tuple[str, ...]
    calendar: AttendanceCalendar | None = None
    trends: tuple[SubjectTrend, ...] = ()
    export_found: bool = False
    case: OpenCase | None = None


def student_page(
    session: Session,
    viewer: Viewer,
    student_id: str,
    *,
    data_dir: Path | None = None,
    now: dt.datetime | None = None,
) -> StudentPage:
    """The student's record, charts and open case; raises what `students.student_record`
    raises. The export in `data_dir` (cached) gives the attendance calendar of the school
    year up to the newest scored week and the score trend per subject."""
    record = students.student_record(session, viewer, student_id)
    chart = risk_chart(record.history) if record.history else None
    mine = [f for f in record.feedback if f.user_id == viewer.user_id]
    if record.current is not None:
        mine = [f for f in mine if f.as_of == record.current.as_of]
    calendar: AttendanceCalendar | None = None
    trends: tuple[SubjectTrend, ...] = ()
    found = False
    if data_dir is not None:
        until = record.current.as_of if record.current else (now or utcnow()).date()
        export = students.student_export(
            data_dir, student_id, since=school_year_start(until - dt.timedelta(days=1)), until=until
        )
        if export is not None:
            found = True
            calendar = attendance_calendar(export)
            trends = score_trends(export.grades)
    case = open_case(session, viewer, record, now or utcnow())
    return StudentPage(
        record, chart, tuple(f.kind for f in mine[:1]), calendar, trends, found, case
    )


# -- the principal's overview -----------------------------------------------------------


@dataclass(frozen=True)
class ClassTiers:
    class_id: str
    size: int
    high: int
    medium: int
    low: int
    alerts: int


@dataclass(frozen=True)
class StaffProgress:
    username: str
    staff_role: str
    done: int
    need: int


@dataclass(frozen=True)
class SchoolOverview:
    as_of: dt.date
    semester_start: dt.date
    classes: tuple[ClassTiers, ...]
    alerts: tuple[ListRow, ...]
    staff: tuple[StaffProgress, ...]


def visited_by_user(session: Session, school_id: str, since: dt.date) -> dict[int, int]:
    """Distinct students of the school each user visited at home since `since`."""
    query = (
        select(Intervention.recorded_by, func.count(distinct(Intervention.student_id)))
        .where(
            Intervention.school_id == school_id,
            Intervention.kind == HOME_VISIT,
            Intervention.date >= since,
            Intervention.recorded_by.is_not(None),
        )
        .group_by(Intervention.recorded_by)
    )
    return {int(user): int(n) for user, n in session.execute(query) if user is not None}


def school_overview(session: Session, viewer: Viewer) -> SchoolOverview:
    """A school admin's overview of their school for the newest week."""
    school_id = viewer.school_id or ""
    weekly = build_list(session, school_id=school_id, as_of=None)
    since = term_start(weekly.as_of)
    scores = queries.scores_for(session, weekly.as_of, school_id)
    sizes = Counter(r.class_id for r in scores)
    tiers = Counter((r.class_id, r.tier) for r in scores)
    alerts = tuple(r for r in weekly.rows if r.ladder is not None and r.change != "left")
    alert_counts = Counter(r.class_id for r in alerts)
    classes = tuple(
        ClassTiers(
            c,
            sizes[c],
            tiers[(c, "high")],
            tiers[(c, "medium")],
            tiers[(c, "low")],
            alert_counts[c],
        )
        for c in sorted(sizes)
    )
    visited = visited_by_user(session, school_id, since)
    staff = []
    for user in list_users(session, school_id=school_id):
        role = user.staff_role or ""
        if role == "homeroom_teacher":
            need = sum(homeroom_minimum(sizes[c]) for c in user.class_ids)
        elif role == "principal":
            need = PRINCIPAL_MINIMUM
        elif role == "subject_teacher":
            need = SUBJECT_TEACHER_MINIMUM
        else:
            continue
        staff.append(StaffProgress(user.username, role, visited.get(user.id, 0), need))
    return SchoolOverview(weekly.as_of, since, classes, alerts, tuple(staff))


# -- the county dashboard and the case pages ------------------------------------------


@dataclass(frozen=True)
class SchoolSummary:
    """One school's row on the county dashboard (newest week)."""

    school_id: str
    enrolled: int
    high: int
    suspected: int  # ladder level 3 this week (疑似辍学)
    confirmed: int  # open level-3 cases a week or more old (辍学)
    open_cases: int
    visits: int  # home visits this term


@dataclass(frozen=True)
class TrendBar:
    x: float
    y: float
    height: float
    as_of: dt.date
    count: int


@dataclass(frozen=True)
class TrendChart:
    """High-tier students per week across the county, as SVG bars."""

    width: int
    height: int
    bottom: int
    bars: tuple[TrendBar, ...]
    bar_width: float
    path: str
    top_count: int


@dataclass(frozen=True)
class CountyDashboard:
    as_of: dt.date
    semester_start: dt.date
    schools: tuple[SchoolSummary, ...]
    roster: tuple[cases.CaseView, ...]
    confirmed_ids: frozenset[int]
    trend: TrendChart | None
    overdue: tuple[cases.CaseView, ...]
    # broken-feed warnings of the export (features.feeds), by school then check
    feeds: tuple[FeedWarning, ...] = ()

    @property
    def feed_schools(self) -> frozenset[str]:
        return frozenset(w.school_id for w in self.feeds)


def high_tier_trend(session: Session, width: int = 640, height: int = 200) -> TrendChart | None:
    """High-tier counts per stored week (every school), oldest on the left."""
    query = (
        select(WeeklyScore.as_of, func.count())
        .where(WeeklyScore.tier == "high")
        .group_by(WeeklyScore.as_of)
        .order_by(WeeklyScore.as_of)
    )
    weeks = [(as_of, int(n)) for as_of, n in session.execute(query)]
    if not weeks:
        return None
    left, right, top, bottom = 36, width - 12, 16, height - 26
    top_count = max(n for _, n in weeks) or 1
    slot = (right - left) / len(weeks)
    bar_width = round(min(slot * 0.6, 48), 1)
    bars = []
    for i, (as_of, n) in enumerate(weeks):
        bar_height = round((bottom - top) * n / top_count, 1)
        x = round(left + slot * i + (slot - bar_width) / 2, 1)
        bars.append(TrendBar(x, round(bottom - bar_height, 1), bar_height, as_of, n))
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{round(b.x + bar_width / 2, 1)},{b.y}" for i, b in enumerate(bars)
    )
    return TrendChart(width, height, bottom, tuple(bars), bar_width, path, top_count)


def county_dashboard(
    session: Session, viewer: Viewer, now: dt.datetime, *, data_dir: Path | None = None
) -> CountyDashboard:
    """Schools side by side, the dropout roster (辍学生花名册) and the weekly trend.

    The roster lists every case that reached ladder level 3 (suspected dropouts), open or
    closed (销号), newest first. `ListNotFound`-free: an empty county shows empty tables.
    With `data_dir` (the export the weekly batch reads), schools whose feed looks broken
    in the half year before the newest week get a warning (`serving.services.feeds`).
    """
    from serving.services.feeds import county_feed_warnings

    viewer.require_role("county_admin")
    as_of = queries.latest_as_of(session)
    if as_of is None:
        raise ListNotFound("no weekly scores are stored yet")
    feeds = county_feed_warnings(data_dir, as_of=as_of) if data_dir is not None else ()
    since = term_start(as_of)
    scores = queries.scores_for(session, as_of)
    every_case = cases.visible_cases(session, viewer, status=None)
    open_cases = [v for v in every_case if v.is_open]
    confirmed = frozenset(v.case.id for v in open_cases if cases.is_confirmed_dropout(v, now))
    visits = Counter(
        school
        for (school,) in session.execute(
            select(Intervention.school_id).where(
                Intervention.kind == HOME_VISIT, Intervention.date >= since
            )
        )
    )
    open_per_school = Counter(v.case.school_id for v in open_cases)
    confirmed_per_school = Counter(v.case.school_id for v in open_cases if v.case.id in confirmed)
    schools = []
    for school_id in sorted({s.school_id for s in scores}):
        mine = [s for s in scores if s.school_id == school_id]
        schools.append(
            SchoolSummary(
                school_id=school_id,
                enrolled=len(mine),
                high=sum(1 for s in mine if s.tier == "high"),
                suspected=sum(1 for s in mine if s.escalation_level >= 3),
                confirmed=confirmed_per_school[school_id],
                open_cases=open_per_school[school_id],
                visits=visits[school_id],
            )
        )
    roster = tuple(v for v in every_case if v.level >= 3)
    return CountyDashboard(
        as_of=as_of,
        semester_start=since,
        schools=tuple(schools),
        roster=roster,
        confirmed_ids=confirmed,
        trend=high_tier_trend(session),
        overdue=tuple(cases.overdue(session, viewer, now)),
        feeds=feeds,
    )


@dataclass(frozen=True)
class CasePage:
    view: cases.CaseView
    history: tuple[queries.CaseEventRow, ...]
    user_names: dict[int, str]
    staff: tuple[tuple[int, str], ...]  # who may be named responsible adult
    can_manage: bool


def case_page(session: Session, viewer: Viewer, case_id: int) -> CasePage:
    """A case with its history; raises what `cases.get_case` raises."""
    view = cases.get_case(session, viewer, case_id)
    history = tuple(queries.case_history(session, case_id))
    users = list_users(session, school_id=view.case.school_id)
    names = {u.id: u.username for u in list_users(session, include_inactive=True)}
    can_manage = viewer.role == "county_admin" or (
        viewer.role == "school_admin" and viewer.school_id == view.case.school_id
    )
    staff = tuple((u.id, u.username) for u in users if u.role in ("teacher", "school_admin"))
    return CasePage(view, history, names, staff, can_manage)
