"""The weekly lists: who each school and class should see first this week.

Tier rule (within each school, by the model's risk alone):

* ``capacity`` = the ``--capacity`` given (visits a school can make this week), or by
  default ``ceil(capacity_share × students enrolled in the school)``;
* ``high``: the ``capacity`` riskiest students (risk_score desc, ties by student_id),
  so the high tier never exceeds capacity;
* ``medium``: the next ``2 × capacity``;
* ``low``: everyone else.

Order of every list (school or class): students with a ladder alert first, highest
ladder level first (3 days absent on top), whatever their score; then risk_score desc;
ties by student_id. A list shows the students in the high or medium tier or with a
ladder alert, followed by the students who were on last week's list and are not on this
week's (change ``left``, at the bottom).

Change since last week (against the newest earlier as_of with stored scores):
``new`` (not on last week's list, or no earlier week), ``rising`` / ``falling`` (tier
moved up / down, or in the same tier risk_score moved by at least
`CHANGE_MIN` = 1 percentage point), ``unchanged``, ``left``.

`run_weekly` is the batch: snapshot, score, store the week in one run (a failure marks
the run failed and leaves last week's scores and files as they were), then write the
lists from what was stored (`build_list`), so the files and the API always agree.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from features.catalog import CATALOG_VERSION
from features.snapshot import build_snapshot
from features.tables import RawTables
from models.contract import PASS_THROUGH
from models.explain import Reason as ModelReason
from models.reasons import Action, LadderAlert, ladder_alert, reason_values, suggest_actions
from serving.registry import LoadedModel
from serving.services import list_files
from serving.services.cases import sync_cases
from serving.services.scoring import (
    ReasonOut,
    ScoredStudent,
    ladder_levels,
    render,
    scored_students,
)
from serving.settings import Settings
from serving.storage import queries
from serving.storage.queries import Reason, WeeklyScoreIn, WeeklyScoreRow

logger = logging.getLogger(__name__)

TIERS = ("high", "medium", "low")
MEDIUM_FACTOR = 2  # the medium tier holds the next 2 × capacity students
CHANGE_MIN = 0.01  # a risk_score move of at least 1 percentage point counts
CHANGES = ("new", "rising", "falling", "unchanged", "left")


class ListNotFound(LookupError):
    """No stored scores for that school (and date): the weekly batch has not run."""

    code = "list_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ListRow:
    """One line of a weekly list."""

    rank: int
    student_id: str
    class_id: str
    grade_level: int
    risk_score: float
    tier: str
    change: str
    ladder: LadderAlert | None
    reasons: tuple[ReasonOut, ...]
    actions: tuple[Action, ...]
    visits_this_term: int


@dataclass(frozen=True)
class WeeklyList:
    """A school's (or one class's) list for one as_of; ``capacity`` = high-tier places."""

    school_id: str
    class_id: str | None
    as_of: dt.date
    model_version: str
    capacity: int
    rows: tuple[ListRow, ...]


@dataclass(frozen=True)
class WeeklyRunResult:
    """What a weekly batch did."""

    run_id: int
    as_of: dt.date
    model_version: str
    n_students: int
    n_explained: int
    files: list[Path]
    seconds: float


# -- pure rules -------------------------------------------------------------------------


def school_capacity(n_enrolled: int, *, capacity: int | None, capacity_share: float) -> int:
    """High-tier places of a school: `capacity` if given, else ceil(share × enrolled)."""
    if capacity is not None:
        if capacity < 0:
            raise ValueError("capacity must be 0 or more")
        return capacity
    return math.ceil(round(capacity_share * n_enrolled, 9))


def risk_order_key(risk_score: float, student_id: str) -> tuple[float, str]:
    """Riskiest first, ties by student_id."""
    return (-risk_score, student_id)


def list_order_key(level: int, risk_score: float, student_id: str) -> tuple[int, float, str]:
    """Ladder level first (3 on top), then riskiest, ties by student_id."""
    return (-level, -risk_score, student_id)


def assign_tiers(students: Sequence[tuple[str, float]], capacity: int) -> dict[str, str]:
    """Tier of each (student_id, risk_score) of one school: high/medium/low by risk rank."""
    ordered = sorted(students, key=lambda s: risk_order_key(s[1], s[0]))
    tiers: dict[str, str] = {}
    for position, (student_id, _) in enumerate(ordered):
        if position < capacity:
            tiers[student_id] = "high"
        elif position < capacity * (1 + MEDIUM_FACTOR):
            tiers[student_id] = "medium"
        else:
            tiers[student_id] = "low"
    return tiers


def on_list(tier: str, escalation_level: int) -> bool:
    """Whether a student appears on the week's list (and is explained by the batch)."""
    return tier in ("high", "medium") or escalation_level > 0


def change_since(
    now: tuple[str, int, float] | None, before: tuple[str, int, float] | None
) -> str | None:
    """Change of one student between two weeks, each (tier, escalation_level, risk_score).

    None when the student is on neither week's list.
    """
    listed_now = now is not None and on_list(now[0], now[1])
    listed_before = before is not None and on_list(before[0], before[1])
    if not listed_now:
        return "left" if listed_before else None
    if not listed_before or before is None or now is None:
        return "new"
    step = TIERS.index(before[0]) - TIERS.index(now[0])
    if step > 0:
        return "rising"
    if step < 0:
        return "falling"
    delta = now[2] - before[2]
    if delta >= CHANGE_MIN:
        return "rising"
    if delta <= -CHANGE_MIN:
        return "falling"
    return "unchanged"


def order_list(
    now: Sequence[tuple[str, str, int, float]],
    before: Mapping[str, tuple[str, int, float]],
) -> list[tuple[str, str, str]]:
    """A school's (or class's) list: (student_id, tier, change) in display order.

    Parameters
    ----------
    now : this week's students as (student_id, tier, escalation_level, risk_score)
    before : last week's standing by student_id, as (tier, escalation_level, risk_score)

    Students on this week's list come first: ladder level desc, risk_score desc, ties by
    student_id. Then those on last week's list but not this week's (change ``left``),
    riskiest first. Everyone else is left out.
    """
    listed: list[tuple[str, str, int, float, str]] = []
    left: list[tuple[str, str, int, float, str]] = []
    for student_id, tier, level, risk in now:
        change = change_since((tier, level, risk), before.get(student_id))
        if change == "left":
            left.append((student_id, tier, level, risk, change))
        elif change is not None:
            listed.append((student_id, tier, level, risk, change))
    listed.sort(key=lambda t: list_order_key(t[2], t[3], t[0]))
    left.sort(key=lambda t: risk_order_key(t[3], t[0]))
    return [(t[0], t[1], t[4]) for t in (*listed, *left)]


def term_start(as_of: dt.date) -> dt.date:
    """Start of the term as_of falls in, for counting visits: 1 Sep (autumn) or 1 Feb."""
    if as_of.month >= 9:
        return dt.date(as_of.year, 9, 1)
    if as_of.month == 1:
        return dt.date(as_of.year - 1, 9, 1)
    return dt.date(as_of.year, 2, 1)


# -- reading a list back from the database ----------------------------------------------


def _rendered(reasons: Iterable[Reason]) -> tuple[ReasonOut, ...]:
    out = []
    for r in reasons:
        value = float(r.value) if isinstance(r.value, int | float) else float("nan")
        out.append(
            render(ModelReason(r.group, r.reason_code, r.feature, value, float(r.contribution)))
        )
    return tuple(out)


def _stored_ladder(row: WeeklyScoreRow) -> LadderAlert | None:
    """The ladder from a stored row: the level is stored; the exact run is known below 3
    (it equals the level) or when it is among the reasons, else shown as 3 (3 or more)."""
    run = next((r.value for r in row.reasons if r.feature == "unexcused_run"), None)
    run_value = float(run) if isinstance(run, int | float) else row.escalation_level
    return ladder_alert(row.escalation_level, max(run_value, row.escalation_level))


def _tiers_of(rows: Sequence[WeeklyScoreRow], capacity: int | None) -> tuple[dict[str, str], int]:
    """Stored tiers (capacity None) or tiers recomputed for `capacity`; and the capacity."""
    if capacity is None:
        tiers = {r.student_id: r.tier for r in rows}
        return tiers, sum(1 for t in tiers.values() if t == "high")
    return assign_tiers([(r.student_id, r.risk_score) for r in rows], capacity), capacity


def _list_row(
    rank: int,
    row: WeeklyScoreRow,
    tier: str,
    change: str,
    visits: int,
) -> ListRow:
    reasons = _rendered(row.reasons)
    actions = suggest_actions(reasons, grade_level=row.grade_level, values=reason_values(reasons))
    return ListRow(
        rank=rank,
        student_id=row.student_id,
        class_id=row.class_id,
        grade_level=row.grade_level,
        risk_score=row.risk_score,
        tier=tier,
        change=change,
        ladder=_stored_ladder(row),
        reasons=reasons,
        actions=tuple(actions),
        visits_this_term=visits,
    )


def _school_rows(
    session: Session, school_id: str, as_of: dt.date, capacity: int | None
) -> tuple[list[tuple[WeeklyScoreRow, str, str]], int, str]:
    """The school's list rows in order as (stored row, tier, change); capacity; version."""
    rows = queries.scores_for(session, as_of, school_id=school_id)
    if not rows:
        raise ListNotFound(f"No weekly list for school {school_id} on {as_of.isoformat()}.")
    tiers, used_capacity = _tiers_of(rows, capacity)
    previous_as_of = queries.previous_as_of(session, as_of, school_id=school_id)
    before_rows = (
        queries.scores_for(session, previous_as_of, school_id=school_id) if previous_as_of else []
    )
    before_tiers, _ = _tiers_of(before_rows, capacity)
    before = {
        r.student_id: (before_tiers[r.student_id], r.escalation_level, r.risk_score)
        for r in before_rows
    }
    by_id = {r.student_id: r for r in rows}
    now = [(r.student_id, tiers[r.student_id], r.escalation_level, r.risk_score) for r in rows]
    ordered = [(by_id[sid], tier, change) for sid, tier, change in order_list(now, before)]
    return ordered, used_capacity, rows[0].model_version


def _as_list(
    school_id: str,
    class_id: str | None,
    as_of: dt.date,
    version: str,
    capacity: int,
    entries: Sequence[tuple[WeeklyScoreRow, str, str]],
    visits: dict[str, int],
) -> WeeklyList:
    rows = tuple(
        _list_row(rank, row, tier, change, visits.get(row.student_id, 0))
        for rank, (row, tier, change) in enumerate(entries, start=1)
    )
    return WeeklyList(school_id, class_id, as_of, version, capacity, rows)


def build_lists(
    session: Session,
    *,
    school_id: str,
    as_of: dt.date | None = None,
    capacity: int | None = None,
) -> tuple[WeeklyList, dict[str, WeeklyList]]:
    """A school's list and the list of each of its classes (every class scored that week,
    even when nobody in it is on the list), read from the database."""
    if as_of is None:
        as_of = queries.latest_as_of(session, school_id=school_id)
        if as_of is None:
            raise ListNotFound(f"No weekly list for school {school_id} yet.")
    entries, used_capacity, version = _school_rows(session, school_id, as_of, capacity)
    visits = queries.visits_this_term(
        session, [e[0].student_id for e in entries], term_start(as_of), until=as_of
    )
    school = _as_list(school_id, None, as_of, version, used_capacity, entries, visits)
    class_ids = sorted({r.class_id for r in queries.scores_for(session, as_of, school_id)})
    classes = {
        class_id: _as_list(
            school_id,
            class_id,
            as_of,
            version,
            used_capacity,
            [e for e in entries if e[0].class_id == class_id],
            visits,
        )
        for class_id in class_ids
    }
    return school, classes


def build_list(
    session: Session,
    *,
    school_id: str,
    as_of: dt.date | None,
    class_id: str | None = None,
    capacity: int | None = None,
) -> WeeklyList:
    """A school's (or one of its classes') list from the stored scores.

    Parameters
    ----------
    as_of : the week; None for the newest week with scores for the school
    class_id : only this class (tiers and changes are still the school's)
    capacity : recompute tiers for this many high-tier places (None: the stored tiers)

    Raises
    ------
    ListNotFound
        when the school has no stored scores (for that week, or at all).
    """
    if as_of is None:
        as_of = queries.latest_as_of(session, school_id=school_id)
        if as_of is None:
            raise ListNotFound(f"No weekly list for school {school_id} yet.")
    entries, used_capacity, version = _school_rows(session, school_id, as_of, capacity)
    if class_id is not None:
        entries = [e for e in entries if e[0].class_id == class_id]
    visits = queries.visits_this_term(
        session, [e[0].student_id for e in entries], term_start(as_of), until=as_of
    )
    return _as_list(school_id, class_id, as_of, version, used_capacity, entries, visits)


# -- the batch --------------------------------------------------------------------------


def week_tiers(
    students: Iterable[tuple[str, str, float]], *, capacity: int | None, capacity_share: float
) -> dict[str, str]:
    """Tier of each student from (school_id, student_id, risk_score) of whole schools:
    `assign_tiers` within each school, with the school's `school_capacity`."""
    by_school: dict[str, list[tuple[str, float]]] = {}
    for school_id, student_id, risk_score in students:
        by_school.setdefault(school_id, []).append((student_id, risk_score))
    tiers: dict[str, str] = {}
    for school in by_school.values():
        places = school_capacity(len(school), capacity=capacity, capacity_share=capacity_share)
        tiers.update(assign_tiers(school, places))
    return tiers


def ranks_in_school(scored: Sequence[ScoredStudent]) -> dict[str, int]:
    """Position of each student in the school's list order (ladder first)."""
    by_school: dict[str, list[ScoredStudent]] = {}
    for s in scored:
        by_school.setdefault(s.school_id, []).append(s)
    ranks: dict[str, int] = {}
    for students in by_school.values():
        students.sort(
            key=lambda s: list_order_key(
                s.ladder.level if s.ladder else 0, s.risk_score, s.student_id
            )
        )
        ranks.update({s.student_id: i for i, s in enumerate(students, start=1)})
    return ranks


def _stored_reasons(student: ScoredStudent) -> tuple[Reason, ...]:
    return tuple(
        Reason(
            group=r.group,
            reason_code=r.reason_code,
            feature=r.feature,
            value=r.value,
            contribution=r.contribution,
        )
        for r in student.reasons
    )


def weekly_rows(
    scored: Sequence[ScoredStudent], tiers: dict[str, str], ranks: dict[str, int]
) -> Iterator[WeeklyScoreIn]:
    """The rows to store, one per scored student (validated one by one, lazily)."""
    for s in scored:
        yield WeeklyScoreIn(
            student_id=s.student_id,
            school_id=s.school_id,
            class_id=s.class_id,
            grade_level=s.grade_level,
            risk_score=s.risk_score,
            margin=s.margin,
            rank_in_school=ranks[s.student_id],
            tier=tiers[s.student_id],
            escalation_level=s.ladder.level if s.ladder else 0,
            reasons=_stored_reasons(s),
        )


@dataclass(frozen=True)
class ScoredSchools:
    """One partition of the week scored: whole schools, tiered, ranked, the listed
    students explained (`score_schools`)."""

    students: list[ScoredStudent]  # snapshot order
    tiers: dict[str, str]

    @property
    def n_explained(self) -> int:
        return sum(1 for s in self.students if s.explained)

    def rows(self) -> Iterator[tuple[WeeklyScoreIn, bool]]:
        """The rows to store (validated lazily), each with whether it was explained."""
        rows = weekly_rows(self.students, self.tiers, ranks_in_school(self.students))
        for row, student in zip(rows, self.students, strict=True):
            yield row, student.explained


def score_schools(
    loaded: LoadedModel, snapshot: pd.DataFrame, *, capacity: int | None, capacity_share: float
) -> ScoredSchools:
    """The weekly batch's scoring of snapshot rows holding whole schools (all of the
    county in memory, or one Dask partition): score everyone, tier each school, then
    explain only those a list shows, in one pass of the model over them.

    Every school in `snapshot` must be in it whole, since tiers and ranks are per school.
    """
    snapshot = snapshot.reset_index(drop=True)
    model = loaded.model
    scored = model.score(snapshot, explain=False, catalog_version=CATALOG_VERSION)
    levels = ladder_levels(snapshot)
    tiers = week_tiers(
        zip(
            snapshot["school_id"].astype(str).tolist(),
            snapshot["student_id"].astype(str).tolist(),
            scored["risk_score"].to_numpy(dtype=np.float64).tolist(),
            strict=True,
        ),
        capacity=capacity,
        capacity_share=capacity_share,
    )
    shown = np.flatnonzero(
        [
            on_list(tiers[student_id], level)
            for student_id, level in zip(
                snapshot["student_id"].astype(str).tolist(), levels, strict=True
            )
        ]
    )
    if shown.size:
        explained = model.score(snapshot.iloc[shown], explain=True)
        for column in explained.columns:
            if column in PASS_THROUGH or column in ("risk_score", "margin", "rank"):
                continue  # the first pass's, for every row
            values = scored[column].to_numpy(copy=True)
            values[shown] = explained[column].to_numpy()
            scored[column] = values
    return ScoredSchools(students=scored_students(loaded, snapshot, scored), tiers=tiers)


def score_week(
    loaded: LoadedModel,
    tables: RawTables,
    *,
    as_of: dt.date,
    capacity: int | None,
    capacity_share: float,
) -> tuple[list[ScoredStudent], dict[str, str]]:
    """Score everyone enrolled on as_of; explain only those a list shows. Returns the
    scored students (snapshot order) and their tiers."""
    week = score_schools(
        loaded,
        build_snapshot(tables, as_of=as_of),
        capacity=capacity,
        capacity_share=capacity_share,
    )
    return week.students, week.tiers


def _write_files(
    session: Session, school_ids: Sequence[str], *, as_of: dt.date, lists_dir: Path
) -> list_files.StagedLists:
    lists: list[WeeklyList] = []
    for school_id in school_ids:
        school, classes = build_lists(session, school_id=school_id, as_of=as_of)
        lists.append(school)
        lists.extend(classes.values())
    return list_files.stage_lists(lists, lists_dir=lists_dir, as_of=as_of)


def store_week(
    session_factory: sessionmaker[Session] | Callable[[], Session],
    run_id: int,
    rows: Iterable[WeeklyScoreIn],
    *,
    as_of: dt.date,
    lists_dir: Path,
) -> tuple[list_files.StagedLists, int, list[str]]:
    """Save a run's rows, open the week's cases and write its lists, all in one transaction.

    `rows` may be a stream (the Dask batch yields one partition at a time). Any failure
    rolls the scores and cases back, puts the earlier list folder back, marks the run
    failed and re-raises. Returns the published lists, the number of rows and the schools.
    """
    n_rows = 0
    schools: set[str] = set()

    def counted(items: Iterable[WeeklyScoreIn]) -> Iterator[WeeklyScoreIn]:
        nonlocal n_rows
        for row in items:
            n_rows += 1
            schools.add(row.school_id)
            yield row

    staged: list_files.StagedLists | None = None
    try:
        with session_factory() as session, session.begin():
            queries.save_weekly_scores(session, run_id, counted(rows))
            # Open the week's cases (ladder alerts, high tier) in the same transaction, so
            # a failed run leaves neither scores nor cases behind.
            sync_cases(session, as_of)
            staged = _write_files(session, sorted(schools), as_of=as_of, lists_dir=lists_dir)
            queries.finish_run(session, run_id, n_students=n_rows)
            staged.publish()
            queries.pause_point("lists_published")
    except BaseException:
        if staged is not None:
            staged.revert()
        with session_factory() as session, session.begin():
            queries.fail_run(session, run_id)
        raise
    staged.finalize()
    return staged, n_rows, sorted(schools)


def store_run(
    session_factory: sessionmaker[Session] | Callable[[], Session],
    loaded: LoadedModel,
    rows: Iterable[tuple[WeeklyScoreIn, bool]],
    *,
    as_of: dt.date,
    lists_dir: Path,
    started: float,
    backend: str = "",
) -> WeeklyRunResult:
    """Start a run, store its rows, cases and lists (`store_week`), say what was done.

    `rows` are the week's rows to store, each with whether it was explained, from one
    or many partitions (`ScoredSchools.rows`); they may be a stream. `started` is the
    `time.perf_counter()` at which the batch began; `backend` is said in the log line.
    """
    with session_factory() as session, session.begin():
        run = queries.start_run(
            session, as_of=as_of, model_version=loaded.version, lists_dir=str(lists_dir)
        )
    n_explained = 0

    def counted(items: Iterable[tuple[WeeklyScoreIn, bool]]) -> Iterator[WeeklyScoreIn]:
        nonlocal n_explained
        for row, explained in items:
            n_explained += explained
            yield row

    staged, n_students, school_ids = store_week(
        session_factory, run.id, counted(rows), as_of=as_of, lists_dir=Path(lists_dir)
    )
    seconds = time.perf_counter() - started
    logger.info(
        "weekly run %d for %s%s: %d students, %d explained, %d schools, %d files in %.1f s",
        run.id,
        as_of,
        backend,
        n_students,
        n_explained,
        len(school_ids),
        len(staged.files),
        seconds,
    )
    return WeeklyRunResult(
        run_id=run.id,
        as_of=as_of,
        model_version=loaded.version,
        n_students=n_students,
        n_explained=n_explained,
        files=list(staged.files),
        seconds=seconds,
    )


def run_weekly(
    session_factory: sessionmaker[Session] | Callable[[], Session],
    loaded: LoadedModel,
    tables: RawTables,
    *,
    as_of: dt.date,
    capacity: int | None,
    capacity_share: float,
    lists_dir: Path,
) -> WeeklyRunResult:
    """The weekly batch: score, store the week in one run, write the lists.

    The county is scored as one partition (`score_schools`) before the run starts. The
    scores are saved, the lists built from them and written into a temporary
    folder, and the folder swapped into ``<lists_dir>/<as_of>`` all inside one
    transaction; any failure rolls the scores back, puts the earlier folder back, and
    marks the run failed (then re-raises).
    """
    started = time.perf_counter()
    week = score_schools(
        loaded,
        build_snapshot(tables, as_of=as_of),
        capacity=capacity,
        capacity_share=capacity_share,
    )
    return store_run(
        session_factory, loaded, week.rows(), as_of=as_of, lists_dir=lists_dir, started=started
    )


WeeklyRun = Callable[[sessionmaker[Session], LoadedModel], WeeklyRunResult]


def weekly_job_with(settings: Settings, run: WeeklyRun) -> WeeklyRunResult:
    """Migrate the database, load the champion, call `run(sessions, champion)` with an
    engine disposed of afterwards: what every backend's `baoxue score` shares."""
    from serving.registry import ModelHolder
    from serving.storage.db import init_db, make_engine, session_factory

    init_db(settings.database_url)
    loaded = ModelHolder.from_settings(settings).load()
    engine = make_engine(settings.database_url)
    try:
        return run(session_factory(engine), loaded)
    finally:
        engine.dispose()


def run_weekly_job(
    settings: Settings, *, export_dir: Path | None, as_of: dt.date, capacity: int | None
) -> WeeklyRunResult:
    """`baoxue score`: read the export, migrate the database, load the champion, run."""
    from features.sources import load_export

    tables = load_export(Path(export_dir) if export_dir else settings.paths.data).tables
    return weekly_job_with(
        settings,
        lambda sessions, loaded: run_weekly(
            sessions,
            loaded,
            tables,
            as_of=as_of,
            capacity=capacity,
            capacity_share=settings.training.capacity_share,
            lists_dir=settings.paths.lists,
        ),
    )
