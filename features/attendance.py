"""Attendance features as of a date: absence counts, rates, streaks, trends.

**A student's school days.** The school days (`features.school_calendar`) of the school of
the enrolment row in force, only on days the student is enrolled and active
(`features.enrolment.active_spells`): days between a dropout or suspension and the return
or resume are not the student's school days, so they count neither as present nor as
absent. The student's school days are numbered 1, 2, 3, ... in date order across school
changes ("student-day index" ``k``); an attendance row on a day that is not one of them
is ignored. A school day with no attendance row (or a ``present`` row) is a present day.

**Windows.** "The last N school days" before ``as_of`` are the student-days
``K-N+1 .. K``, where ``K`` is the number of the student's school days strictly before
``as_of``. Weekends and holidays are not school days, so a run of absences across a
weekend or a holiday is one run. A rate divides by the student's school days in the window,
``min(N, K)``, and is NaN when ``K = 0``.

**How it scales.** Nothing is computed per day per student. Attendance rows that are not
``present`` are numbered with ``k`` (a join with the spells and the school calendar), and
per-student cumulative counts over them are taken once with DuckDB window functions. For
every (student, as_of) pair, ``K`` comes from the spells by arithmetic on school-day
numbers, and each window count is a difference of two cumulative counts found with an
ASOF join. Many as_of dates cost one pass over the register.

Only attendance rows, school days and status events dated strictly before ``as_of`` can
influence a pair: ``k <= K`` selects days before ``as_of``; terms and day numbers of past
days do not depend on later calendar rows.
"""

from __future__ import annotations

import logging

import pandas as pd

from features.enrolment import active_spells, connect
from features.school_calendar import school_days, school_terms
from features.tables import RawTables

logger = logging.getLogger(__name__)

WINDOWS = (7, 14, 30, 90)
"""Window lengths in school days for the count and rate features."""
TREND_DAYS = 30
TERM_START_DAYS = 10
"""School days after a term start that count as "the first two weeks"."""
ESCALATION_MAX = 3

INT_FEATURES = (
    *(f"unexcused_{n}d" for n in WINDOWS),
    *(f"leave_{n}d" for n in WINDOWS),
    "late_30d",
    "unexcused_run",
    "escalation_level",
    "unexcused_longest_run_term",
    "active_days_90d",
)
FLOAT_FEATURES = (
    *(f"unexcused_rate_{n}d" for n in WINDOWS),
    *(f"leave_rate_{n}d" for n in WINDOWS),
    "unexcused_trend_30d",
    "unexcused_rate_term",
    "unexcused_rate_term_change",
    "missed_after_spring_start",
    "missed_after_september_start",
)
FEATURES = INT_FEATURES + FLOAT_FEATURES


def _lookup_sql() -> str:
    """Long list of (pair, which, x): the student-day indices whose cumulative counts we need."""
    parts = ["SELECT pair_no, student_id, 'k' AS which, kk AS x FROM pt"]
    for n in sorted({*WINDOWS, 2 * TREND_DAYS}):
        parts.append(f"SELECT pair_no, student_id, 'k{n}', kk - {n} FROM pt")
    parts += [
        "SELECT pair_no, student_id, 'tc0', kts_cur - 1 FROM pt WHERE kts_cur IS NOT NULL",
        "SELECT pair_no, student_id, 'tp0', kts_prev - 1 FROM pt WHERE kts_prev IS NOT NULL",
        "SELECT pair_no, student_id, 'tp1', kts_prev + least(kk - kts_cur + 1, n_prev) - 1"
        " FROM pt WHERE kts_prev IS NOT NULL",
    ]
    return "\n UNION ALL ".join(parts)


def _pivot_sql() -> str:
    cols = []
    for which in ["k", *(f"k{n}" for n in sorted({*WINDOWS, 2 * TREND_DAYS})), "tc0", "tp0", "tp1"]:
        for c in ("cu", "cl", "clate"):
            cols.append(f"max({c}) FILTER (WHERE which = '{which}') AS {c}_{which}")
    return ",\n ".join(cols)


def _feature_sql() -> str:
    cols = []
    for n in WINDOWS:
        cols += [
            f"(cu_k - cu_k{n})::BIGINT AS unexcused_{n}d",
            f"(cl_k - cl_k{n})::BIGINT AS leave_{n}d",
            f"CASE WHEN kk > 0 THEN (cu_k - cu_k{n}) / least({n}, kk) END AS unexcused_rate_{n}d",
            f"CASE WHEN kk > 0 THEN (cl_k - cl_k{n}) / least({n}, kk) END AS leave_rate_{n}d",
        ]
    t = TREND_DAYS
    cols += [
        f"(clate_k - clate_k{t})::BIGINT AS late_30d",
        "coalesce(run_all, 0)::BIGINT AS unexcused_run",
        f"least(coalesce(run_all, 0), {ESCALATION_MAX})::BIGINT AS escalation_level",
        "coalesce(longest, 0)::BIGINT AS unexcused_longest_run_term",
        "least(kk, 90)::BIGINT AS active_days_90d",
        f"CASE WHEN kk > {t} THEN (cu_k - cu_k{t}) / {t}"
        f" - (cu_k{t} - cu_k{2 * t}) / least({t}, kk - {t}) END AS unexcused_trend_30d",
        "CASE WHEN kts_cur IS NOT NULL THEN (cu_k - cu_tc0) / (kk - kts_cur + 1)"
        " END AS unexcused_rate_term",
        "CASE WHEN kts_prev IS NOT NULL THEN (cu_k - cu_tc0) / (kk - kts_cur + 1)"
        " - (cu_tp1 - cu_tp0) / least(kk - kts_cur + 1, n_prev) END AS unexcused_rate_term_change",
        "CASE WHEN spring_ftd <= 10 THEN coalesce(spring_missed, 0) END"
        " AS missed_after_spring_start",
        "CASE WHEN sept_ftd <= 10 THEN coalesce(sept_missed, 0) END"
        " AS missed_after_september_start",
    ]
    return ",\n ".join(cols)


def attendance_features(
    tables: RawTables, *, population: pd.DataFrame, spells: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Attendance features for each (student, as_of) of `population`.

    Parameters
    ----------
    tables : RawTables
        Uses `calendar` (``school_id``, ``date``), `attendance` (``student_id``, ``date``,
        ``status``), and, unless `spells` is given, `enrolments` and `status_events`.
    population : pd.DataFrame
        Rows with ``student_id`` (str) and ``as_of`` (datetime64); usually the output of
        `features.enrolment.enrolled_population`.
    spells : pd.DataFrame, optional
        `features.enrolment.active_spells(tables)`, when the caller already has it.

    Returns
    -------
    pd.DataFrame
        ``student_id``, ``as_of`` and the columns of `FEATURES`, one row per population
        row in the same order:

        * ``unexcused_{7,14,30,90}d`` / ``leave_{7,14,30,90}d`` (int64): unexcused
          absences / sick or personal leave in the last N school days.
        * ``unexcused_rate_*`` / ``leave_rate_*`` (float64): the same per school day in
          the window (NaN with no school day yet).
        * ``late_30d`` (int64): late arrivals in the last 30 school days.
        * ``unexcused_run`` (int64): the current run of consecutive unexcused absences
          ending on the student's last school day before as_of.
        * ``escalation_level`` (int64): ``min(unexcused_run, 3)``, the written ladder
          (1 day: contact the family; 2: home visit; 3+: suspected dropout).
        * ``unexcused_longest_run_term`` (int64): the longest run within the current term.
        * ``active_days_90d`` (int64): the student's school days in the last 90.
        * ``unexcused_trend_30d`` (float64): unexcused rate in the last 30 school days
          minus the rate in the 30 before (NaN until the student has 31 school days).
        * ``unexcused_rate_term`` (float64): unexcused rate in the current term so far.
        * ``unexcused_rate_term_change`` (float64): that rate minus the rate over the
          same number of the student's school days from the start of the previous term
          (NaN without a previous term).
        * ``missed_after_spring_start`` / ``missed_after_september_start`` (float64):
          days missed (unexcused or on leave) in the first 10 school days of the most
          recent spring / September term start before as_of; NaN when there is none or
          the student had no school day in those 10 days. A period still running on
          as_of counts its days so far.
    """
    spells = active_spells(tables) if spells is None else spells
    days = school_days(tables.calendar)
    terms = school_terms(tables.calendar)
    register = tables.attendance
    att = pd.DataFrame(
        {
            "student_id": register["student_id"].astype("str"),
            "date": pd.to_datetime(register["date"]).astype("datetime64[ns]"),
            "status": register["status"].astype("str"),
        }
    )
    pairs = pd.DataFrame(
        {
            "student_id": population["student_id"].astype("str").to_numpy(),
            "as_of": pd.to_datetime(population["as_of"]).astype("datetime64[ns]").to_numpy(),
        }
    )
    con = connect()
    con.register("school_days_t", days)
    con.register("terms_t", terms)
    con.register("spells_t", spells.loc[:, ["student_id", "school_id", "from_date", "to_date"]])
    con.register("att_t", att)
    con.register("pairs_t", pairs)
    sql = f"""
    WITH sd AS (
        SELECT school_id, CAST(date AS DATE) AS date, day_no,
               CAST(term_start AS DATE) AS term_start, term_kind, day_in_term
        FROM school_days_t
    ),
    terms AS (
        SELECT school_id, CAST(term_start AS DATE) AS term_start, term_kind,
               first_day_no, last_day_no
        FROM terms_t
    ),
    sp0 AS (
        SELECT student_id, school_id, CAST(from_date AS DATE) AS from_date,
               CAST(to_date AS DATE) AS to_date
        FROM spells_t
    ),
    sp1 AS (
        SELECT sp0.*, coalesce(d.day_no, 0) + 1 AS lo
        FROM sp0 ASOF LEFT JOIN sd d ON d.school_id = sp0.school_id AND d.date < sp0.from_date
    ),
    sp2 AS (
        SELECT sp1.*, coalesce(d.day_no, 0) AS hi
        FROM sp1 ASOF LEFT JOIN sd d ON d.school_id = sp1.school_id AND d.date <= sp1.to_date
    ),
    sp AS (
        SELECT sp2.student_id, sp2.school_id, sp2.from_date, sp2.to_date, sp2.lo, sp2.hi,
               d.date AS first_date,
               coalesce(sum(sp2.hi - sp2.lo + 1) OVER (
                   PARTITION BY sp2.student_id ORDER BY sp2.from_date
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS k0
        FROM sp2 JOIN sd d ON d.school_id = sp2.school_id AND d.day_no = sp2.lo
        WHERE sp2.hi >= sp2.lo
    ),
    att AS (
        SELECT student_id, CAST(date AS DATE) AS date,
               max(CASE status WHEN 'absent_unexcused' THEN 4 WHEN 'leave_sick' THEN 3
                               WHEN 'leave_personal' THEN 2 WHEN 'late' THEN 1 ELSE 0 END)
                   AS code
        FROM att_t WHERE status <> 'present'
        GROUP BY student_id, CAST(date AS DATE)
    ),
    ev AS (
        SELECT a.student_id, sp.k0 + d.day_no - sp.lo + 1 AS k,
               d.term_start, d.day_in_term,
               (a.code = 4)::INTEGER AS u, (a.code IN (2, 3))::INTEGER AS l,
               (a.code = 1)::INTEGER AS late
        FROM att a
        JOIN sp ON sp.student_id = a.student_id
               AND a.date >= sp.from_date AND a.date <= sp.to_date
        JOIN sd d ON d.school_id = sp.school_id AND d.date = a.date
        WHERE a.code > 0
    ),
    cum AS (
        SELECT student_id, k,
               sum(u) OVER w AS cu, sum(l) OVER w AS cl, sum(late) OVER w AS clate
        FROM ev
        WINDOW w AS (PARTITION BY student_id ORDER BY k ROWS UNBOUNDED PRECEDING)
    ),
    runs AS (
        SELECT student_id, k, term_start,
               k - min(k) OVER (PARTITION BY student_id, g) + 1 AS run_all,
               k - min(k) OVER (PARTITION BY student_id, term_start, gt) + 1 AS run_term
        FROM (
            SELECT student_id, k, term_start,
                   k - row_number() OVER (PARTITION BY student_id ORDER BY k) AS g,
                   k - row_number() OVER (PARTITION BY student_id, term_start ORDER BY k)
                       AS gt
            FROM ev WHERE u = 1
        )
    ),
    early AS (
        SELECT student_id, k, term_start FROM ev
        WHERE day_in_term <= {TERM_START_DAYS} AND u + l > 0
    ),
    st AS (
        SELECT sp.student_id, t.term_start, any_value(t.term_kind) AS term_kind,
               min(sp.k0 + greatest(sp.lo, t.first_day_no) - sp.lo + 1) AS kts,
               sum(least(sp.hi, t.last_day_no) - greatest(sp.lo, t.first_day_no) + 1)
                   AS n_days,
               min(greatest(sp.lo, t.first_day_no) - t.first_day_no + 1) AS first_term_day
        FROM sp JOIN terms t
          ON t.school_id = sp.school_id AND t.first_day_no <= sp.hi AND t.last_day_no >= sp.lo
        GROUP BY sp.student_id, t.term_start
    ),
    p AS (
        SELECT row_number() OVER () AS pair_no, student_id, CAST(as_of AS DATE) AS as_of
        FROM pairs_t
    ),
    pk1 AS (
        SELECT p.pair_no, p.student_id, p.as_of, sp.school_id, sp.lo, sp.hi, sp.k0
        FROM p ASOF LEFT JOIN sp ON sp.student_id = p.student_id AND sp.first_date < p.as_of
    ),
    pk2 AS (
        SELECT pk1.*, d.day_no AS cnt
        FROM pk1 ASOF LEFT JOIN sd d ON d.school_id = pk1.school_id AND d.date < pk1.as_of
    ),
    pk AS (
        SELECT pair_no, student_id, as_of, school_id,
               coalesce(k0 + least(hi, cnt) - lo + 1, 0) AS kk, least(hi, cnt) AS last_day_no
        FROM pk2
    ),
    pt0 AS (
        SELECT pk.*, d.term_start AS cur_term, st.kts AS kts_cur
        FROM pk
        LEFT JOIN sd d ON d.school_id = pk.school_id AND d.day_no = pk.last_day_no
        LEFT JOIN st ON st.student_id = pk.student_id AND st.term_start = d.term_start
    ),
    pt AS (
        SELECT pt0.*, st.kts AS kts_prev, st.n_days AS n_prev
        FROM pt0 ASOF LEFT JOIN st ON st.student_id = pt0.student_id AND st.kts < pt0.kts_cur
    ),
    lk AS ({_lookup_sql()}),
    lv AS (
        SELECT lk.pair_no, lk.which,
               coalesce(c.cu, 0) AS cu, coalesce(c.cl, 0) AS cl, coalesce(c.clate, 0) AS clate
        FROM lk ASOF LEFT JOIN cum c ON c.student_id = lk.student_id AND c.k <= lk.x
    ),
    piv AS (SELECT pair_no, {_pivot_sql()} FROM lv GROUP BY pair_no),
    cur_run AS (
        SELECT pt.pair_no, r.run_all
        FROM pt JOIN runs r ON r.student_id = pt.student_id AND r.k = pt.kk
    ),
    long_run AS (
        SELECT pt.pair_no, max(r.run_term) AS longest
        FROM pt JOIN runs r
          ON r.student_id = pt.student_id AND r.term_start = pt.cur_term AND r.k <= pt.kk
        GROUP BY pt.pair_no
    ),
    spring AS (
        SELECT pk.pair_no, pk.student_id, pk.kk, s.term_start, s.first_term_day
        FROM pk ASOF JOIN (SELECT * FROM st WHERE term_kind = 'spring') s
          ON s.student_id = pk.student_id AND s.kts <= pk.kk
    ),
    sept AS (
        SELECT pk.pair_no, pk.student_id, pk.kk, s.term_start, s.first_term_day
        FROM pk ASOF JOIN (SELECT * FROM st WHERE term_kind = 'september') s
          ON s.student_id = pk.student_id AND s.kts <= pk.kk
    ),
    spring_n AS (
        SELECT b.pair_no, any_value(b.first_term_day) AS spring_ftd, count(e.k) AS spring_missed
        FROM spring b LEFT JOIN early e
          ON e.student_id = b.student_id AND e.term_start = b.term_start AND e.k <= b.kk
        GROUP BY b.pair_no
    ),
    sept_n AS (
        SELECT b.pair_no, any_value(b.first_term_day) AS sept_ftd, count(e.k) AS sept_missed
        FROM sept b LEFT JOIN early e
          ON e.student_id = b.student_id AND e.term_start = b.term_start AND e.k <= b.kk
        GROUP BY b.pair_no
    ),
    wide AS (
        SELECT pt.pair_no, pt.kk, pt.kts_cur, pt.kts_prev, pt.n_prev, piv.*,
               cur_run.run_all, long_run.longest,
               spring_n.spring_ftd, spring_n.spring_missed,
               sept_n.sept_ftd, sept_n.sept_missed
        FROM pt
        JOIN piv USING (pair_no)
        LEFT JOIN cur_run USING (pair_no)
        LEFT JOIN long_run USING (pair_no)
        LEFT JOIN spring_n USING (pair_no)
        LEFT JOIN sept_n USING (pair_no)
    )
    SELECT pair_no, {_feature_sql()}
    FROM wide ORDER BY pair_no
    """
    result = con.sql(sql).df()
    con.close()
    out = pd.DataFrame(
        {
            "student_id": pairs["student_id"].to_numpy(),
            "as_of": pairs["as_of"].to_numpy(),
        }
    )
    for name in INT_FEATURES:
        out[name] = result[name].to_numpy().astype("int64")
    for name in FLOAT_FEATURES:
        out[name] = result[name].to_numpy().astype("float64")
    out = out.astype({"student_id": "str", "as_of": "datetime64[ns]"})
    logger.debug("attendance features for %d (student, as_of) pairs", len(out))
    return out
