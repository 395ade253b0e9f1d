"""Exam features as of a date: level, change, failed and missed subjects, rank.

A grades row is known from its ``date`` (the day the result became known), so a pair
(student, as_of) sees only rows with ``date < as_of``.

* An **exam sitting** of a student is the set of their grades rows with the same
  (``school_year``, ``term``, ``exam``, ``date``); monthly exams repeat within a term and
  are told apart by date. Its **score share** is the mean over its subjects of
  ``score / max_score``, leaving out missed subjects (NaN score, 缺考); a sitting with
  every subject missed has no share.
* A subject is **failed** when its score is below 60 % of its maximum.
* The **rank percentile** of a sitting is DuckDB ``percent_rank`` of its share among the
  sittings with the same (school, grade level, ``school_year``, ``term``, ``exam``,
  ``date``): 0 for the lowest, 1 for the highest, NaN when alone. School and grade level
  come from the enrolment row of that school year (latest start). Sharing the result date
  keeps the peer group inside what was known before as_of.
* The **current term** of as_of is (school year, term) by date: the school year starts in
  August; term 1 covers August to January, term 2 February to July.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features.enrolment import connect, enrolment_rows
from features.tables import RawTables

logger = logging.getLogger(__name__)

FAIL_SHARE = 0.6
"""A subject below this share of its maximum is failed (不及格)."""
MEAN_WINDOW_DAYS = 365

FEATURES = (
    "latest_score_share",
    "score_share_change",
    "subjects_failed_latest",
    "score_rank_pct",
    "year_mean_score_share",
    "exams_missed_term",
    "exams_missed_prev_term",
)
INT_FEATURES = ("exams_missed_term", "exams_missed_prev_term")


def academic_features(
    tables: RawTables, *, population: pd.DataFrame, enrolments: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Exam features for each (student, as_of) of `population`.

    Parameters
    ----------
    tables : RawTables
        Uses `grades` (``student_id``, ``school_year``, ``term``, ``exam``, ``subject``,
        ``score``, ``max_score``, ``date``) and `enrolments`.
    population : pd.DataFrame
        Rows with ``student_id`` (str) and ``as_of`` (datetime64).
    enrolments : pd.DataFrame, optional
        `features.enrolment.enrolment_rows(tables.enrolments)`, when the caller has it.

    Returns
    -------
    pd.DataFrame
        ``student_id``, ``as_of`` and, in population order:

        * ``latest_score_share`` (float64): share of the latest sitting known before as_of.
        * ``score_share_change`` (float64): latest share minus the previous sitting's.
        * ``subjects_failed_latest`` (float64): failed subjects in the latest sitting.
        * ``score_rank_pct`` (float64): rank percentile of the latest sitting.
        * ``year_mean_score_share`` (float64): mean share of the sittings known in the
          365 days before as_of.
        * ``exams_missed_term`` / ``exams_missed_prev_term`` (int64): missed subject
          papers (NaN score) known before as_of in the current / previous term.

        Share features are NaN for a student with no sitting yet.
    """
    g = tables.grades
    grades = pd.DataFrame(
        {
            "student_id": g["student_id"].astype("str"),
            "school_year": g["school_year"].astype("int64"),
            "term": g["term"].astype("int64"),
            "exam": g["exam"].astype("str"),
            "score": g["score"].astype("float64"),
            "max_score": g["max_score"].astype("float64"),
            "date": pd.to_datetime(g["date"]).astype("datetime64[ns]"),
        }
    )
    grades = grades[grades["max_score"] > 0]
    pairs = pd.DataFrame(
        {
            "pair_no": np.arange(len(population), dtype=np.int64),
            "student_id": population["student_id"].astype("str").to_numpy(),
            "as_of": pd.to_datetime(population["as_of"]).astype("datetime64[ns]").to_numpy(),
        }
    )
    con = connect()
    con.register("grades_t", grades)
    con.register("enr_t", enrolment_rows(tables.enrolments) if enrolments is None else enrolments)
    con.register("pairs_t", pairs)
    sql = f"""
    WITH gr AS (
        SELECT student_id, school_year, term, exam, CAST(date AS DATE) AS date,
               score / max_score AS share
        FROM grades_t
    ),
    sit AS (
        SELECT student_id, school_year, term, exam, date,
               avg(share) AS share,
               count(*) FILTER (WHERE share < {FAIL_SHARE}) AS failed
        FROM gr GROUP BY ALL
    ),
    place AS (
        SELECT student_id, school_year, school_id, grade_level FROM enr_t
        QUALIFY row_number() OVER (PARTITION BY student_id, school_year
                                   ORDER BY start_date DESC, school_id, class_id) = 1
    ),
    ranked AS (
        SELECT s.*,
               CASE WHEN s.share IS NULL THEN NULL
                    WHEN count(s.share) OVER peers > 1 THEN percent_rank() OVER peers_ord
               END AS rank_pct
        FROM (
            SELECT sit.*, pl.school_id, pl.grade_level,
                   sit.share IS NULL AS no_share
            FROM sit LEFT JOIN place pl USING (student_id, school_year)
        ) s
        WINDOW peers AS (PARTITION BY school_id, grade_level, school_year, term, exam, date,
                                      no_share),
               peers_ord AS (PARTITION BY school_id, grade_level, school_year, term, exam, date,
                                          no_share ORDER BY share)
    ),
    seq AS (
        SELECT student_id, date, share, failed, rank_pct,
               lag(share) OVER (PARTITION BY student_id ORDER BY date, school_year, term, exam)
                   AS prev_share,
               row_number() OVER (PARTITION BY student_id ORDER BY date, school_year, term, exam)
                   AS n
        FROM ranked
    ),
    last_of_day AS (  -- the last sitting of each date stands for the date
        SELECT * FROM seq
        QUALIFY row_number() OVER (PARTITION BY student_id, date ORDER BY n DESC) = 1
    ),
    daily AS (
        SELECT student_id, date,
               sum(coalesce(share, 0)) AS share_sum, count(share) AS share_n
        FROM sit GROUP BY student_id, date
    ),
    cum AS (
        SELECT student_id, date,
               sum(share_sum) OVER w AS c_sum, sum(share_n) OVER w AS c_n
        FROM daily WINDOW w AS (PARTITION BY student_id ORDER BY date ROWS UNBOUNDED PRECEDING)
    ),
    missed AS (
        SELECT student_id, school_year, term, date,
               sum(count(*)) OVER (PARTITION BY student_id, school_year, term ORDER BY date
                                   ROWS UNBOUNDED PRECEDING) AS c_missed
        FROM gr WHERE share IS NULL GROUP BY student_id, school_year, term, date
    ),
    p AS (
        SELECT pair_no, student_id, CAST(as_of AS DATE) AS as_of,
               CASE WHEN month(as_of) >= 8 THEN year(as_of) ELSE year(as_of) - 1 END AS sy,
               CASE WHEN month(as_of) >= 8 OR month(as_of) = 1 THEN 1 ELSE 2 END AS tm
        FROM pairs_t
    ),
    p2 AS (
        SELECT *, CASE WHEN tm = 2 THEN sy ELSE sy - 1 END AS prev_sy,
                  CASE WHEN tm = 2 THEN 1 ELSE 2 END AS prev_tm,
                  as_of - INTERVAL {MEAN_WINDOW_DAYS} DAY AS window_start
        FROM p
    ),
    latest AS (
        SELECT p2.pair_no, l.share, l.prev_share, l.failed, l.rank_pct
        FROM p2 ASOF JOIN last_of_day l ON l.student_id = p2.student_id AND l.date < p2.as_of
    ),
    c_now AS (
        SELECT p2.pair_no, c.c_sum, c.c_n
        FROM p2 ASOF JOIN cum c ON c.student_id = p2.student_id AND c.date < p2.as_of
    ),
    c_then AS (
        SELECT p2.pair_no, c.c_sum, c.c_n
        FROM p2 ASOF JOIN cum c
          ON c.student_id = p2.student_id AND c.date < CAST(p2.window_start AS DATE)
    ),
    m_cur AS (
        SELECT p2.pair_no, m.c_missed
        FROM p2 ASOF JOIN missed m
          ON m.student_id = p2.student_id AND m.school_year = p2.sy AND m.term = p2.tm
         AND m.date < p2.as_of
    ),
    m_prev AS (
        SELECT p2.pair_no, m.c_missed
        FROM p2 ASOF JOIN missed m
          ON m.student_id = p2.student_id AND m.school_year = p2.prev_sy
         AND m.term = p2.prev_tm AND m.date < p2.as_of
    )
    SELECT p2.pair_no,
           latest.share AS latest_score_share,
           latest.share - latest.prev_share AS score_share_change,
           CASE WHEN latest.pair_no IS NOT NULL THEN latest.failed END AS subjects_failed_latest,
           latest.rank_pct AS score_rank_pct,
           (c_now.c_sum - coalesce(c_then.c_sum, 0))
             / nullif(c_now.c_n - coalesce(c_then.c_n, 0), 0) AS year_mean_score_share,
           coalesce(m_cur.c_missed, 0) AS exams_missed_term,
           coalesce(m_prev.c_missed, 0) AS exams_missed_prev_term
    FROM p2
    LEFT JOIN latest USING (pair_no)
    LEFT JOIN c_now USING (pair_no)
    LEFT JOIN c_then USING (pair_no)
    LEFT JOIN m_cur USING (pair_no)
    LEFT JOIN m_prev USING (pair_no)
    ORDER BY p2.pair_no
    """
    result = con.execute(sql).df()
    con.close()
    out = pd.DataFrame(
        {
            "student_id": pairs["student_id"].to_numpy(),
            "as_of": pairs["as_of"].to_numpy(),
        }
    )
    for name in FEATURES:
        dtype = "int64" if name in INT_FEATURES else "float64"
        out[name] = result[name].to_numpy().astype(dtype)
    return out.astype({"student_id": "str", "as_of": "datetime64[ns]"})
