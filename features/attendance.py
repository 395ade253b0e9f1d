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

**How it scales.** Nothing is computed per day per student. DuckDB joins the register's
non-present rows to the spells and the school calendar (integer keys), numbering each
with ``k``, and finds per (student, as_of) pair the facts that need joins: ``K``, the
current and previous term, the last spring and September term start (ASOF joins). The
per-student cumulative counts and runs over the numbered days are then one sorted pass in
numpy, and every window count is a difference of two cumulative counts found with
`numpy.searchsorted` (DuckDB's partitioned window functions cost several times more at
100k small partitions). Many as_of dates cost one pass over the register; 100,000
students x 200 school days take about a second on two cores
(bench/bench_attendance_features.py).

Only attendance rows, school days and status events dated strictly before ``as_of`` can
influence a pair: ``k <= K`` selects days before ``as_of``; terms and day numbers of past
days do not depend on later calendar rows.
"""

from __future__ import annotations

import logging

import numpy as np
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


STATUS_CODES = {
    "present": 0,
    "late": 1,
    "leave_personal": 2,
    "leave_sick": 3,
    "absent_unexcused": 4,
}
"""Attendance status -> code; a day with several rows keeps the highest."""


def _day_numbers(values: pd.Series) -> np.ndarray:
    """Dates as int32 days since 1970-01-01 (integer keys join and sort fastest)."""
    days: np.ndarray = pd.to_datetime(values).to_numpy(dtype="datetime64[D]").astype(np.int32)
    return days


def _integer_frames(
    tables: RawTables, *, population: pd.DataFrame, spells: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The inputs of the attendance query with ids, dates and statuses as integers."""
    register = tables.attendance
    status_codes, status_values = pd.factorize(register["status"].astype("str"))
    priority = np.array([STATUS_CODES.get(v, 0) for v in status_values], dtype=np.int8)
    code = priority[status_codes] if len(status_values) else np.zeros(0, dtype=np.int8)
    absent = code > 0
    student_keys, _ = pd.factorize(
        pd.concat(
            [
                spells["student_id"].astype("str"),
                population["student_id"].astype("str"),
                register["student_id"].astype("str")[absent],
            ],
            ignore_index=True,
        )
    )
    n_spells, n_pairs = len(spells), len(population)
    days = school_days(tables.calendar)
    terms = school_terms(tables.calendar, days=days)
    school_keys, _ = pd.factorize(
        pd.concat([days["school_id"], terms["school_id"], spells["school_id"].astype("str")])
    )
    n_days, n_terms = len(days), len(terms)
    kind_codes = {"spring": 1, "september": 2, "other": 0}
    return {
        "school_days_t": pd.DataFrame(
            {
                "school_id": school_keys[:n_days].astype(np.int32),
                "date": _day_numbers(days["date"]),
                "day_no": days["day_no"].to_numpy(np.int32),
                "term_start": _day_numbers(days["term_start"]),
                "term_kind": days["term_kind"].map(kind_codes).to_numpy(np.int8),
                "day_in_term": days["day_in_term"].to_numpy(np.int32),
            }
        ),
        "terms_t": pd.DataFrame(
            {
                "school_id": school_keys[n_days : n_days + n_terms].astype(np.int32),
                "term_start": _day_numbers(terms["term_start"]),
                "term_kind": terms["term_kind"].map(kind_codes).to_numpy(np.int8),
                "first_day_no": terms["first_day_no"].to_numpy(np.int32),
                "last_day_no": terms["last_day_no"].to_numpy(np.int32),
            }
        ),
        "spells_t": pd.DataFrame(
            {
                "student_id": student_keys[:n_spells].astype(np.int32),
                "school_id": school_keys[n_days + n_terms :].astype(np.int32),
                "from_date": _day_numbers(spells["from_date"]),
                "to_date": _day_numbers(spells["to_date"]),
            }
        ),
        "pairs_t": pd.DataFrame(
            {
                "pair_no": np.arange(n_pairs, dtype=np.int64),
                "student_id": student_keys[n_spells : n_spells + n_pairs].astype(np.int32),
                "as_of": _day_numbers(population["as_of"]),
            }
        ),
        "att_t": pd.DataFrame(
            {
                "student_id": student_keys[n_spells + n_pairs :].astype(np.int32),
                "date": _day_numbers(register["date"][absent]),
                "code": code[absent],
            }
        ),
    }


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
    con = connect()
    try:
        for name, frame in _integer_frames(tables, population=population, spells=spells).items():
            con.register(name, frame)
        for statement in _STAGES:
            con.execute(statement)
        events = con.execute(_EVENTS_SQL).fetchnumpy()
        per_pair = con.execute(_PAIRS_SQL).fetchnumpy()
    finally:
        con.close()
    features = _features(per_pair, {k: np.asarray(v) for k, v in events.items()})
    out = pd.DataFrame(
        {
            "student_id": population["student_id"].astype("str").to_numpy(),
            "as_of": pd.to_datetime(population["as_of"]).to_numpy(dtype="datetime64[ns]"),
            **{name: features[name].astype("int64") for name in INT_FEATURES},
            **{name: features[name].astype("float64") for name in FLOAT_FEATURES},
        }
    )
    out = out.astype({"student_id": "str", "as_of": "datetime64[ns]"})
    logger.debug("attendance features for %d (student, as_of) pairs", len(out))
    return out


# Stage 1: spells on school-day numbers, and the register's non-present days numbered by
# student-day index k (temp tables `sd`, `sp`, `ev`, `st`).
_STAGES = (
    """
    CREATE TEMP TABLE sd AS
    SELECT school_id, date, day_no, term_start, term_kind, day_in_term FROM school_days_t
    """,
    """
    CREATE TEMP TABLE sp AS
    WITH sp1 AS (
        SELECT s.student_id, s.school_id, s.from_date, s.to_date,
               coalesce(d.day_no, 0) + 1 AS lo
        FROM spells_t s ASOF LEFT JOIN sd d ON d.school_id = s.school_id AND d.date < s.from_date
    ),
    sp2 AS (
        SELECT sp1.*, coalesce(d.day_no, 0) AS hi
        FROM sp1 ASOF LEFT JOIN sd d ON d.school_id = sp1.school_id AND d.date <= sp1.to_date
    )
    SELECT sp2.student_id, sp2.school_id, sp2.from_date, sp2.to_date, sp2.lo, sp2.hi,
           d.date AS first_date,
           coalesce(sum(sp2.hi - sp2.lo + 1) OVER (
               PARTITION BY sp2.student_id ORDER BY sp2.from_date
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS k0
    FROM sp2 JOIN sd d ON d.school_id = sp2.school_id AND d.day_no = sp2.lo
    WHERE sp2.hi >= sp2.lo
    """,
    """
    CREATE TEMP TABLE ev AS
    WITH att AS (SELECT student_id, date, max(code) AS code FROM att_t GROUP BY student_id, date)
    SELECT a.student_id, sp.k0 + d.day_no - sp.lo + 1 AS k, d.term_start, d.day_in_term,
           (a.code = 4)::INTEGER AS u, (a.code IN (2, 3))::INTEGER AS l,
           (a.code = 1)::INTEGER AS late
    FROM att a
    JOIN sp ON sp.student_id = a.student_id
    JOIN sd d ON d.school_id = sp.school_id AND d.date = a.date
    WHERE a.date >= sp.from_date AND a.date <= sp.to_date
    """,
    """
    CREATE TEMP TABLE st AS
    SELECT sp.student_id, t.term_start, any_value(t.term_kind) AS term_kind,
           min(sp.k0 + greatest(sp.lo, t.first_day_no) - sp.lo + 1) AS kts,
           sum(least(sp.hi, t.last_day_no) - greatest(sp.lo, t.first_day_no) + 1) AS n_days,
           min(greatest(sp.lo, t.first_day_no) - t.first_day_no + 1) AS first_term_day
    FROM sp JOIN terms_t t
      ON t.school_id = sp.school_id AND t.first_day_no <= sp.hi AND t.last_day_no >= sp.lo
    GROUP BY sp.student_id, t.term_start
    """,
)

# Stage 2: the numbered days, sorted by student and k, for the numpy step.
_EVENTS_SQL = """
    SELECT student_id, k, term_start, day_in_term, u, l, late FROM ev ORDER BY student_id, k
"""

# Stage 3: per (student, as_of) pair: K, the current and previous term, runs, term starts.
_PAIRS_SQL = """
    WITH pk1 AS (
        SELECT p.pair_no, p.student_id, p.as_of, sp.school_id, sp.lo, sp.hi, sp.k0
        FROM pairs_t p ASOF LEFT JOIN sp ON sp.student_id = p.student_id AND sp.first_date < p.as_of
    ),
    pk2 AS (
        SELECT pk1.*, d.day_no AS cnt
        FROM pk1 ASOF LEFT JOIN sd d ON d.school_id = pk1.school_id AND d.date < pk1.as_of
    ),
    pk AS (
        SELECT pair_no, student_id, school_id,
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
    spring AS (
        SELECT pk.pair_no, s.term_start AS spring_term, s.first_term_day AS spring_ftd
        FROM pk ASOF JOIN (SELECT * FROM st WHERE term_kind = 1) s
          ON s.student_id = pk.student_id AND s.kts <= pk.kk
    ),
    sept AS (
        SELECT pk.pair_no, s.term_start AS sept_term, s.first_term_day AS sept_ftd
        FROM pk ASOF JOIN (SELECT * FROM st WHERE term_kind = 2) s
          ON s.student_id = pk.student_id AND s.kts <= pk.kk
    )
    SELECT pt.pair_no, pt.student_id, pt.kk, pt.cur_term, pt.kts_cur, pt.kts_prev, pt.n_prev,
           spring.spring_term, spring.spring_ftd, sept.sept_term, sept.sept_ftd
    FROM pt
    LEFT JOIN spring USING (pair_no)
    LEFT JOIN sept USING (pair_no)
    ORDER BY pt.pair_no
"""


class _Steps:
    """Step functions per group: the value at the last row with ``k <= x`` of a group.

    Rows are (group, k) with integer keys, sorted here by (group, k). Columns in `last`
    are kept as they are, those in `cumulative` summed and those in `running_max`
    maximised along each group, in that order. `at` answers many (group, x) queries
    with `numpy.searchsorted` and gives `default` where the group has no row with
    ``k <= x``.
    """

    def __init__(
        self,
        group: np.ndarray,
        k: np.ndarray,
        *,
        last: dict[str, np.ndarray] | None = None,
        cumulative: dict[str, np.ndarray] | None = None,
        running_max: dict[str, np.ndarray] | None = None,
    ) -> None:
        group = group.astype(np.int64)
        k = k.astype(np.int64)
        in_order = bool(
            np.all((group[1:] > group[:-1]) | ((group[1:] == group[:-1]) & (k[1:] >= k[:-1])))
        )
        order = np.arange(len(k)) if in_order else np.lexsort((k, group))
        sorted_group = group[order]
        first = np.ones(len(k), dtype=bool)
        first[1:] = sorted_group[1:] != sorted_group[:-1]
        self.groups = sorted_group[first]
        self.dense = np.cumsum(first, dtype=np.int64) - 1
        self.keys = (self.dense << 32) | k[order]
        self.values: dict[str, np.ndarray] = {}
        for name, v in (last or {}).items():
            self.values[name] = v[order]
        for name, v in (cumulative or {}).items():
            self.values[name] = _group_cumsum(self.dense, v[order].astype(np.int64))
        for name, v in (running_max or {}).items():
            series = pd.Series(v[order].astype(np.int64))
            self.values[name] = series.groupby(self.dense).cummax().to_numpy(np.int64)

    def at(self, group: np.ndarray, x: np.ndarray, default: float = 0.0) -> dict[str, np.ndarray]:
        """Values at the last row with ``k <= x`` in each queried group (x may be NaN)."""
        x_int = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=-1.0)
        x_int = np.clip(x_int, -1, 2**31 - 1).astype(np.int64)
        n = len(self.keys)
        if n == 0:
            return {name: np.full(len(x_int), default) for name in self.values}
        g = np.clip(np.searchsorted(self.groups, group), 0, len(self.groups) - 1)
        query = (g.astype(np.int64) << 32) | np.clip(x_int, 0, None)
        idx = np.clip(np.searchsorted(self.keys, query, side="right") - 1, 0, n - 1)
        found = (self.groups[g] == group) & (x_int >= 0) & (self.dense[idx] == g)
        found &= (self.keys[idx] & 0xFFFFFFFF) <= x_int
        return {
            name: np.where(found, v[idx], default).astype(np.float64)
            for name, v in self.values.items()
        }


def _group_cumsum(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Cumulative sum of `values` within runs of equal `group` (rows sorted by group)."""
    total = np.cumsum(values, dtype=np.int64)
    starts = np.ones(len(group), dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(group)), 0))
    result: np.ndarray = total - (total - values)[first]
    return result


def _run_lengths(breaks: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Length so far of the run each row is in; a run starts where `breaks` is True."""
    start = np.maximum.accumulate(np.where(breaks, np.arange(len(k)), 0))
    lengths: np.ndarray = (k - k[start] + 1).astype(np.int64)
    return lengths


def _masked(values: np.ndarray) -> np.ndarray:
    """A fetched column as float64 with NaN for NULL."""
    if isinstance(values, np.ma.MaskedArray):
        filled: np.ndarray = np.ma.filled(values.astype(np.float64), np.nan)
        return filled
    return np.asarray(values, dtype=np.float64)


def _features(pairs: dict[str, np.ndarray], events: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feature columns from the per-pair facts and the numbered days.

    `events` holds the students' non-present school days sorted by (``student_id``,
    ``k``), with ``term_start`` (int days), ``day_in_term`` and 0/1 ``u`` (unexcused),
    ``l`` (leave), ``late``. `pairs` holds, per (student, as_of): ``kk`` (K), the current
    term's start and first index ``kts_cur``, the previous term's ``kts_prev`` and length
    ``n_prev``, the most recent spring / September term start and the student's first
    day in it (``*_term``, ``*_ftd``).
    """
    sid = np.asarray(events["student_id"], dtype=np.int64)
    k = np.asarray(events["k"], dtype=np.int64)
    term = np.asarray(events["term_start"], dtype=np.int64)
    u, leave, late = (np.asarray(events[c], dtype=np.int64) for c in ("u", "l", "late"))
    counts = _Steps(sid, k, cumulative={"cu": u, "cl": leave, "clate": late})
    # Runs of consecutive unexcused student-days, over all days and within a term.
    is_u = u == 1
    su, ku, tu = sid[is_u], k[is_u], term[is_u]
    new_run = np.ones(len(su), dtype=bool)
    new_run[1:] = (su[1:] != su[:-1]) | (ku[1:] != ku[:-1] + 1)
    new_term_run = new_run.copy()
    new_term_run[1:] |= tu[1:] != tu[:-1]
    runs = _Steps(su, ku, last={"run": _run_lengths(new_run, ku), "k": ku})
    longest = _Steps((su << 32) | tu, ku, running_max={"n": _run_lengths(new_term_run, ku)})
    # Days missed in the first TERM_START_DAYS school days of each term.
    early = (np.asarray(events["day_in_term"]) <= TERM_START_DAYS) & ((u + leave) > 0)
    ones = np.ones(int(early.sum()), dtype=np.int64)
    starts = _Steps((sid[early] << 32) | term[early], k[early], cumulative={"n": ones})

    student = np.asarray(pairs["student_id"], dtype=np.int64)
    kk = _masked(pairs["kk"])
    kts_cur = _masked(pairs["kts_cur"])
    kts_prev = _masked(pairs["kts_prev"])
    n_prev = _masked(pairs["n_prev"])
    out: dict[str, np.ndarray] = {}
    now = counts.at(student, kk)
    back = {n: counts.at(student, kk - n) for n in sorted({*WINDOWS, 2 * TREND_DAYS})}
    with np.errstate(divide="ignore", invalid="ignore"):
        for n in WINDOWS:
            days = np.minimum(n, kk)
            unexcused = now["cu"] - back[n]["cu"]
            leave_days = now["cl"] - back[n]["cl"]
            out[f"unexcused_{n}d"] = unexcused
            out[f"leave_{n}d"] = leave_days
            out[f"unexcused_rate_{n}d"] = np.where(kk > 0, unexcused / days, np.nan)
            out[f"leave_rate_{n}d"] = np.where(kk > 0, leave_days / days, np.nan)
        t = TREND_DAYS
        out["late_30d"] = now["clate"] - back[t]["clate"]
        last_run = runs.at(student, kk)
        run = np.where(last_run["k"] == kk, last_run["run"], 0.0)
        out["unexcused_run"] = run
        out["escalation_level"] = np.minimum(run, ESCALATION_MAX)
        cur_term = np.nan_to_num(_masked(pairs["cur_term"]), nan=0).astype(np.int64)
        out["unexcused_longest_run_term"] = longest.at((student << 32) | cur_term, kk)["n"]
        out["active_days_90d"] = np.minimum(kk, 90)
        last = (now["cu"] - back[t]["cu"]) / t
        before = (back[t]["cu"] - back[2 * t]["cu"]) / np.minimum(t, kk - t)
        out["unexcused_trend_30d"] = np.where(kk > t, last - before, np.nan)
        term_days = kk - kts_cur + 1
        rate_term = (now["cu"] - counts.at(student, kts_cur - 1)["cu"]) / term_days
        out["unexcused_rate_term"] = np.where(np.isnan(kts_cur), np.nan, rate_term)
        same_point = np.minimum(term_days, n_prev)
        prev_from = counts.at(student, kts_prev - 1)["cu"]
        prev_to = counts.at(student, kts_prev + same_point - 1)["cu"]
        rate_prev = (prev_to - prev_from) / same_point
        out["unexcused_rate_term_change"] = np.where(
            np.isnan(kts_prev), np.nan, rate_term - rate_prev
        )
        for kind, name in (
            ("spring", "missed_after_spring_start"),
            ("sept", "missed_after_september_start"),
        ):
            first_day = _masked(pairs[f"{kind}_ftd"])
            start = np.nan_to_num(_masked(pairs[f"{kind}_term"]), nan=0).astype(np.int64)
            missed = starts.at((student << 32) | start, kk)["n"]
            out[name] = np.where(first_day <= TERM_START_DAYS, missed, np.nan)
    return out
