"""Who is in school on a date, and the enrolment history behind each student.

Rules (docs/data-contract.md, `features.tables`):

* An enrolment row is **in force** on a day when ``start_date <= day <= end_date``; a
  missing start or end defaults to `default_enrolment_start` / `default_enrolment_end`
  of its school year. When several rows are in force, the one with the latest start
  (then the latest school year) wins.
* A student's **status** changes with `status_events`. Events of `LEAVING_EVENTS`
  (transfer_out, suspend, dropout, graduate) make the student inactive, events of
  `ACTIVE_EVENTS` (enrol, transfer_in, resume, return) active again; a student with no
  event is active. Several events on one date are applied leaving-first, so a date with
  any active event (a transfer out of one school and into another, a dropout brought
  back the same day) ends active.
* **Population on as_of**: an enrolment row in force on ``as_of`` and a status, from the
  events dated strictly before ``as_of``, that is active.
* **Active spells** (for attendance): the days on which an enrolment row is in force and
  the status after that day's events is active. A dropout dated ``d`` makes ``d`` itself
  inactive; a return dated ``d`` makes ``d`` active. A spell's days before ``as_of`` use
  only events dated before ``as_of``, consistent with the population rule.

History features for a (student, as_of) pair use only status events dated strictly
before as_of; see `enrolment_features` for each rule.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from features.tables import (
    ACTIVE_EVENTS,
    LEAVING_EVENTS,
    RawTables,
    default_enrolment_end,
    default_enrolment_start,
)

logger = logging.getLogger(__name__)

POPULATION_COLUMNS = ("student_id", "as_of", "school_id", "class_id", "grade_level", "school_year")
TRANSITION_GRADES = (6, 7, 9)
"""Grades at a transition: the last primary year, the first junior year, graduation year."""
JUNIOR_FIRST_GRADE = 7
SCHOOL_START_AGE = 5.5
"""Expected age of a grade-g pupil in the middle of a school year is g + 5.5 (school
starts at 6, the September after the sixth birthday; mid-year adds about half a year)."""


_DATABASE: list[duckdb.DuckDBPyConnection] = []
_DATABASE_LOCK = threading.Lock()


def connect() -> duckdb.DuckDBPyConnection:
    """A new connection (cursor) to one in-memory DuckDB database kept for the process.

    Opening a fresh database costs 15-50 ms (more than the whole computation for one
    student, as `POST /v1/score` needs); a cursor costs microseconds. Each cursor has its
    own temporary tables and registered frames, so concurrent calls share nothing. Close it
    when done.
    """
    with _DATABASE_LOCK:
        if not _DATABASE:
            _DATABASE.append(duckdb.connect(database=":memory:"))
            atexit.register(_close_database)
        return _DATABASE[0].cursor()


def _close_database() -> None:
    """Close the shared database before the interpreter goes down, so DuckDB's bindings
    are released in order (otherwise nanobind prints 'leaked types' at every exit)."""
    with _DATABASE_LOCK:
        while _DATABASE:
            _DATABASE.pop().close()


def _in_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def as_of_frame(as_ofs: Sequence[dt.date]) -> pd.DataFrame:
    """Distinct, sorted ``as_of`` dates as a one-column frame (datetime64[ns])."""
    stamps = sorted({pd.Timestamp(d).normalize() for d in as_ofs})
    return pd.DataFrame({"as_of": pd.Series(stamps, dtype="datetime64[ns]")})


def enrolment_rows(enrolments: pd.DataFrame) -> pd.DataFrame:
    """The `enrolments` table with start and end dates filled from the school-year defaults.

    Returns columns ``student_id``, ``school_year``, ``school_id``, ``class_id``,
    ``grade_level``, ``start_date``, ``end_date`` (datetime64[ns]); rows whose end is
    before their start are dropped.
    """
    out = pd.DataFrame(
        {
            "student_id": enrolments["student_id"].astype("str"),
            "school_year": enrolments["school_year"].astype("int64"),
            "school_id": enrolments["school_id"].astype("str"),
            "class_id": enrolments["class_id"].astype("str"),
            "grade_level": enrolments["grade_level"].astype("int64"),
        }
    )
    years = out["school_year"].unique()
    starts = {y: default_enrolment_start(int(y)) for y in years}
    ends = {y: default_enrolment_end(int(y)) for y in years}
    for col, defaults in (("start_date", starts), ("end_date", ends)):
        given = (
            pd.to_datetime(enrolments[col]).dt.normalize()
            if col in enrolments.columns
            else pd.Series(pd.NaT, index=out.index)
        )
        fallback = out["school_year"].map(defaults)
        out[col] = given.fillna(fallback).astype("datetime64[ns]")
    kept = out[out["start_date"] <= out["end_date"]]
    if len(kept) < len(out):
        logger.warning("ignored %d enrolment rows that end before they start", len(out) - len(kept))
    return kept.reset_index(drop=True)


def _events(status_events: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "student_id": status_events["student_id"].astype("str"),
            "date": pd.to_datetime(status_events["date"]).dt.normalize().astype("datetime64[ns]"),
            "event": status_events["event"].astype("str"),
        }
    )


# Leaving events after which a later enrolment row means the pupil is back in school even
# when the export records no event for it (primary graduation, then junior school).
REOPENED_BY_ENROLMENT = ("graduate", "transfer_out")


def status_events(tables: RawTables, enrolments: pd.DataFrame | None = None) -> pd.DataFrame:
    """Status events plus an implicit ``enrol`` at the start of every enrolment row whose
    latest earlier event is a graduation or a transfer out.

    Many county exports record 小学毕业 (``graduate``) at the end of grade 6 and then only
    the grade-7 enrolment row at the junior school, or a ``transfer_out`` followed by the
    next school's row, with no ``enrol``/``transfer_in`` event. Without this, such pupils
    would drop out of the population in the very grades where risk peaks. A ``dropout`` or
    ``suspend`` is not reopened by an enrolment row: a return needs its ``return`` or
    ``resume`` event.
    """
    events = _events(tables.status_events)
    enrolments = enrolment_rows(tables.enrolments) if enrolments is None else enrolments
    rows = enrolments[["student_id", "start_date"]].drop_duplicates()
    if events.empty or rows.empty:
        return events
    ordered = events.sort_values(["date", "student_id"], kind="stable")
    starts = rows.rename(columns={"start_date": "date"}).sort_values("date", kind="stable")
    previous = pd.merge_asof(
        starts,
        ordered.rename(columns={"date": "event_date"}),
        left_on="date",
        right_on="event_date",
        by="student_id",
        allow_exact_matches=False,
    )
    reopen = previous["event"].isin(REOPENED_BY_ENROLMENT)
    implicit = previous.loc[reopen, ["student_id", "date"]].assign(event="enrol")
    return pd.concat([events, implicit], ignore_index=True)


_STATE_SQL = f"""
    SELECT student_id, CAST(date AS DATE) AS date,
           bool_or(event IN {_in_list(ACTIVE_EVENTS)})
             OR NOT bool_or(event IN {_in_list(LEAVING_EVENTS)}) AS active
    FROM events GROUP BY student_id, CAST(date AS DATE)
"""
"""Status after all events of one date (leaving events first, then active ones)."""

_ENR_SQL = """
    SELECT student_id, school_year, school_id, class_id, grade_level,
           CAST(start_date AS DATE) AS start_date, CAST(end_date AS DATE) AS end_date
    FROM enr_rows
"""


def active_spells(
    tables: RawTables,
    *,
    enrolments: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Intervals of days on which each student is enrolled and active.

    `enrolments` (`enrolment_rows`) and `events` (the status events with the implicit
    ones) may be passed when the caller already has them; they are computed otherwise.

    Returns
    -------
    pd.DataFrame
        Columns ``student_id``, ``from_date``, ``to_date`` (datetime64[ns], inclusive),
        ``school_id``, ``class_id``, ``grade_level``, ``school_year`` (of the enrolment
        row in force); non-overlapping, sorted by student and ``from_date``.
    """
    enrolments = enrolment_rows(tables.enrolments) if enrolments is None else enrolments
    events = status_events(tables, enrolments) if events is None else events
    con = connect()
    con.register("enr_rows", enrolments)
    con.register("events", events)
    sql = f"""
    WITH enr AS ({_ENR_SQL}),
    state AS ({_STATE_SQL}),
    pts AS (
        SELECT student_id, start_date AS p FROM enr
        UNION SELECT student_id, end_date + 1 FROM enr
        UNION SELECT s.student_id, s.date FROM state s SEMI JOIN enr e USING (student_id)
    ),
    iv AS (
        SELECT student_id, p AS from_date,
               lead(p) OVER (PARTITION BY student_id ORDER BY p) - 1 AS to_date
        FROM pts
    ),
    chosen AS (
        SELECT iv.student_id, iv.from_date, iv.to_date,
               e.school_id, e.class_id, e.grade_level, e.school_year
        FROM iv JOIN enr e
          ON e.student_id = iv.student_id
         AND e.start_date <= iv.from_date AND iv.from_date <= e.end_date
        WHERE iv.to_date IS NOT NULL
        QUALIFY row_number() OVER (
            PARTITION BY iv.student_id, iv.from_date
            ORDER BY e.start_date DESC, e.school_year DESC, e.school_id, e.class_id) = 1
    )
    SELECT c.student_id, c.from_date, c.to_date,
           c.school_id, c.class_id, c.grade_level, c.school_year
    FROM chosen c ASOF LEFT JOIN state s
      ON s.student_id = c.student_id AND s.date <= c.from_date
    WHERE coalesce(s.active, TRUE)
    ORDER BY c.student_id, c.from_date
    """
    spells = con.execute(sql).df()
    con.close()
    return spells.astype(
        {
            "student_id": "str",
            "from_date": "datetime64[ns]",
            "to_date": "datetime64[ns]",
            "school_id": "str",
            "class_id": "str",
            "grade_level": "int64",
            "school_year": "int64",
        }
    )


def enrolled_population(
    tables: RawTables,
    *,
    as_ofs: Sequence[dt.date],
    enrolments: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The students enrolled and active on each as_of.

    Parameters
    ----------
    tables : RawTables
        Uses `enrolments` and `status_events`.
    as_ofs : sequence of datetime.date
        Dates to build the population for (duplicates ignored).
    enrolments, events : pd.DataFrame, optional
        `enrolment_rows(tables.enrolments)` and the status events with the implicit ones,
        when the caller already has them (as in `active_spells`).

    Returns
    -------
    pd.DataFrame
        Columns ``student_id`` (str), ``as_of`` (datetime64[ns]), ``school_id``,
        ``class_id`` (str), ``grade_level``, ``school_year`` (int64) from the enrolment
        row in force; one row per (student, as_of), sorted by ``as_of`` then
        ``student_id``. Status uses only events dated strictly before as_of.
    """
    enrolments = enrolment_rows(tables.enrolments) if enrolments is None else enrolments
    events = status_events(tables, enrolments) if events is None else events
    con = connect()
    con.register("enr_rows", enrolments)
    con.register("events", events)
    con.register("as_of_dates", as_of_frame(as_ofs))
    sql = f"""
    WITH enr AS ({_ENR_SQL}),
    state AS ({_STATE_SQL}),
    days AS (SELECT CAST(as_of AS DATE) AS as_of FROM as_of_dates),
    in_force AS (
        SELECT e.student_id, d.as_of, e.school_id, e.class_id, e.grade_level, e.school_year
        FROM days d JOIN enr e ON e.start_date <= d.as_of AND d.as_of <= e.end_date
        QUALIFY row_number() OVER (
            PARTITION BY e.student_id, d.as_of
            ORDER BY e.start_date DESC, e.school_year DESC, e.school_id, e.class_id) = 1
    )
    SELECT f.student_id, f.as_of, f.school_id, f.class_id, f.grade_level, f.school_year,
           coalesce(s.active, TRUE) AS active
    FROM in_force f ASOF LEFT JOIN state s
      ON s.student_id = f.student_id AND s.date < f.as_of
    """
    rows = con.execute(sql).df()
    con.close()
    inactive = int((~rows["active"].astype(bool)).sum())
    if inactive:
        logger.info(
            "%d enrolled (student, as_of) rows are inactive (left, suspended or graduated)",
            inactive,
        )
    population = rows[rows["active"].astype(bool)].drop(columns="active")
    population = population.astype(
        {
            "student_id": "str",
            "as_of": "datetime64[ns]",
            "school_id": "str",
            "class_id": "str",
            "grade_level": "int64",
            "school_year": "int64",
        }
    )
    return population.sort_values(["as_of", "student_id"], kind="stable").reset_index(drop=True)


def enrolment_features(
    tables: RawTables, *, population: pd.DataFrame, enrolments: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Transition, age and history features for each (student, as_of) of `population`.

    Parameters
    ----------
    tables : RawTables
        Uses `students` (``birth_date``), `enrolments` and `status_events`.
    population : pd.DataFrame
        Output of `enrolled_population` (``student_id``, ``as_of``, ``school_id``,
        ``grade_level``, ``school_year``).
    enrolments : pd.DataFrame, optional
        `enrolment_rows(tables.enrolments)`, when the caller already has it.

    Returns
    -------
    pd.DataFrame
        ``student_id``, ``as_of`` and, aligned with `population`:

        * ``years_over_age`` (float64): age on as_of in years (days / 365.25) minus
          ``grade_level + 5.5``, clipped at 0; NaN without a birth date.
        * ``transition_year`` (int64): 1 in grade 6, 7 or 9.
        * ``days_since_school_change`` (float64): days from the later of (a) the start of
          the student's run of consecutive enrolment rows at the current school and (b)
          the last ``transfer_in`` before as_of, to as_of. For a student whose first row
          in the export is at the current school this is a lower bound.
        * ``new_at_school_this_year`` (float64): 1 when that change falls in the
          enrolment row now in force (a new school this school year), 0 when the student
          was at this school the school year before; NaN when the export holds no
          earlier row for the student and no rows at all for the previous school year
          (grade 1, and grade 7 at a ``junior`` school, count as new).
        * ``dropout_returns`` (int64): ``return`` events before as_of (辍返生 when > 0).
        * ``days_since_return`` (float64): days since the last ``return``; NaN if none.
        * ``dropouts_before`` (int64): ``dropout`` events before as_of.
        * ``suspensions`` (int64): ``suspend`` events before as_of.
        * ``transfers_in`` (int64): ``transfer_in`` events before as_of.
    """
    pairs = population.loc[:, ["student_id", "as_of", "school_id", "grade_level", "school_year"]]
    pairs = pairs.assign(pair_no=np.arange(len(pairs), dtype=np.int64))
    enrolments = enrolment_rows(tables.enrolments) if enrolments is None else enrolments
    enr = enrolments.sort_values(["student_id", "start_date", "school_year"], kind="stable")
    sid = enr["student_id"].to_numpy()
    school = enr["school_id"].to_numpy()
    new_run = np.r_[True, (sid[1:] != sid[:-1]) | (school[1:] != school[:-1])]
    enr["run_start"] = enr["start_date"].where(new_run).ffill().astype("datetime64[ns]")
    enr["first_row"] = np.r_[True, sid[1:] != sid[:-1]]
    students = tables.students
    births = pd.DataFrame(
        {
            "student_id": students["student_id"].astype("str"),
            "birth_date": pd.to_datetime(students["birth_date"]).astype("datetime64[ns]"),
        }
    )
    years_present = pd.DataFrame({"school_year": np.unique(enr["school_year"].to_numpy())})
    con = connect()
    con.register("pairs", pairs)
    con.register("enr_runs", enr)
    con.register("events", _events(tables.status_events))
    con.register("births", births)
    con.register("years_present", years_present)
    sql = """
    WITH p AS (
        SELECT pair_no, student_id, CAST(as_of AS DATE) AS as_of,
               school_id, grade_level, school_year
        FROM pairs
    ),
    cur AS (  -- the enrolment row in force (latest start on or before as_of, same school)
        SELECT p.pair_no, CAST(e.run_start AS DATE) AS run_start,
               CAST(e.start_date AS DATE) AS row_start, e.first_row
        FROM p JOIN enr_runs e
          ON e.student_id = p.student_id AND e.school_id = p.school_id
         AND CAST(e.start_date AS DATE) <= p.as_of AND p.as_of <= CAST(e.end_date AS DATE)
        QUALIFY row_number() OVER (PARTITION BY p.pair_no
                                   ORDER BY e.start_date DESC, e.school_year DESC) = 1
    ),
    ev AS (
        SELECT student_id, CAST(date AS DATE) AS date, event,
               count(*) FILTER (WHERE event = 'return') OVER w AS n_return,
               count(*) FILTER (WHERE event = 'dropout') OVER w AS n_dropout,
               count(*) FILTER (WHERE event = 'suspend') OVER w AS n_suspend,
               count(*) FILTER (WHERE event = 'transfer_in') OVER w AS n_transfer_in,
               max(CASE WHEN event = 'return' THEN CAST(date AS DATE) END) OVER w AS last_return,
               max(CASE WHEN event = 'transfer_in' THEN CAST(date AS DATE) END) OVER w
                   AS last_transfer_in
        FROM events
        WINDOW w AS (PARTITION BY student_id ORDER BY CAST(date AS DATE)
                     RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    ),
    ev_day AS (
        SELECT student_id, date, max(n_return) AS n_return, max(n_dropout) AS n_dropout,
               max(n_suspend) AS n_suspend, max(n_transfer_in) AS n_transfer_in,
               max(last_return) AS last_return, max(last_transfer_in) AS last_transfer_in
        FROM ev GROUP BY student_id, date
    ),
    hist AS (
        SELECT p.pair_no, h.n_return, h.n_dropout, h.n_suspend, h.n_transfer_in,
               h.last_return, h.last_transfer_in
        FROM p ASOF LEFT JOIN ev_day h ON h.student_id = p.student_id AND h.date < p.as_of
    )
    SELECT p.pair_no, p.student_id, p.as_of, p.grade_level, p.school_year,
           CAST(b.birth_date AS DATE) AS birth_date,
           c.run_start, c.row_start, c.first_row,
           (SELECT count(*) FROM years_present y WHERE y.school_year = p.school_year - 1)
               AS prev_year_known,
           coalesce(h.n_return, 0) AS dropout_returns,
           coalesce(h.n_dropout, 0) AS dropouts_before,
           coalesce(h.n_suspend, 0) AS suspensions,
           coalesce(h.n_transfer_in, 0) AS transfers_in,
           h.last_return, h.last_transfer_in
    FROM p LEFT JOIN cur c USING (pair_no)
    LEFT JOIN hist h USING (pair_no)
    LEFT JOIN births b ON b.student_id = p.student_id
    ORDER BY p.pair_no
    """
    raw = con.execute(sql).df()
    con.close()
    as_of = pd.to_datetime(raw["as_of"]).astype("datetime64[ns]")
    birth = pd.to_datetime(raw["birth_date"]).astype("datetime64[ns]")
    age = (as_of - birth).dt.days / 365.25
    expected = raw["grade_level"].astype("float64") + SCHOOL_START_AGE
    over_age = (age - expected).clip(lower=0.0)
    run_start = pd.to_datetime(raw["run_start"]).astype("datetime64[ns]")
    last_in = pd.to_datetime(raw["last_transfer_in"]).astype("datetime64[ns]")
    change = pd.concat([run_start, last_in], axis=1).max(axis=1)
    row_start = pd.to_datetime(raw["row_start"]).astype("datetime64[ns]")
    new_here = (change >= row_start).astype("float64")
    first_row = raw["first_row"].astype("boolean").fillna(False).astype(bool)
    levels = dict(
        zip(
            tables.schools["school_id"].astype("str"),
            tables.schools["level"].astype("str"),
            strict=True,
        )
    )
    junior_entry = (population["grade_level"].to_numpy() == JUNIOR_FIRST_GRADE) & (
        population["school_id"].astype("str").map(levels).to_numpy() == "junior"
    )
    starts_here = (raw["grade_level"] == 1).to_numpy() | junior_entry
    unknown = first_row & ~starts_here & (raw["prev_year_known"] == 0)
    unknown &= ~(last_in >= row_start)
    new_here = new_here.where(~unknown, np.nan).where(change.notna(), np.nan)
    last_return = pd.to_datetime(raw["last_return"]).astype("datetime64[ns]")
    out = pd.DataFrame(
        {
            "student_id": raw["student_id"].astype("str"),
            "as_of": as_of,
            "years_over_age": over_age.astype("float64"),
            "transition_year": raw["grade_level"].isin(TRANSITION_GRADES).astype("int64"),
            "days_since_school_change": (as_of - change).dt.days.astype("float64"),
            "new_at_school_this_year": new_here.astype("float64"),
            "dropout_returns": raw["dropout_returns"].astype("int64"),
            "days_since_return": (as_of - last_return).dt.days.astype("float64"),
            "dropouts_before": raw["dropouts_before"].astype("int64"),
            "suspensions": raw["suspensions"].astype("int64"),
            "transfers_in": raw["transfers_in"].astype("int64"),
        }
    )
    return out
