"""The reference for the snapshot benchmark: attendance features as one DuckDB query.

A hand-written query over Parquet files, the way an analyst would write it: expand each
student's active spells into their school days before as_of, number them backwards, join
the register (highest status of a day wins) and count with ``FILTER`` clauses. It computes
the window features of `features.attendance` (counts and rates over the last 7/14/30/90
school days, lateness, the current unexcused run, the ladder level, active days and the
30-day trend); the term-based features have no reference here.

Inputs (written by the bench, not timed): ``population`` (student_id, as_of),
``spells`` (`features.enrolment.active_spells`: student_id, school_id, from_date,
to_date), ``calendar`` (school_id, date: one row per school day) and ``attendance``
(student_id, date, status), each a Parquet file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.attendance import WINDOWS

WINDOW_COLUMNS = (
    *(f"unexcused_{n}d" for n in WINDOWS),
    *(f"leave_{n}d" for n in WINDOWS),
    *(f"unexcused_rate_{n}d" for n in WINDOWS),
    *(f"leave_rate_{n}d" for n in WINDOWS),
    "late_30d",
    "unexcused_run",
    "escalation_level",
    "active_days_90d",
    "unexcused_trend_30d",
)
"""The attendance feature columns the reference computes (and the bench compares)."""


def _query(files: dict[str, Path]) -> str:
    counts = ",\n".join(
        f"count(*) FILTER (WHERE code = 4 AND back <= {n}) AS unexcused_{n}d,\n"
        f"count(*) FILTER (WHERE code IN (2, 3) AND back <= {n}) AS leave_{n}d"
        for n in WINDOWS
    )
    rates = ",\n".join(
        f"CASE WHEN kk > 0 THEN unexcused_{n}d / least({n}, kk) END AS unexcused_rate_{n}d,\n"
        f"CASE WHEN kk > 0 THEN leave_{n}d / least({n}, kk) END AS leave_rate_{n}d"
        for n in WINDOWS
    )
    plain = ", ".join(
        f"coalesce(c.{c}, 0) AS {c}"
        for c in (
            *(f"unexcused_{n}d" for n in WINDOWS),
            *(f"leave_{n}d" for n in WINDOWS),
            "late_30d",
            "unexcused_run",
        )
    )
    return f"""
    WITH pop AS (
        SELECT row_number() OVER () AS pair_no, student_id, CAST(as_of AS DATE) AS as_of
        FROM read_parquet('{files["population"]}')
    ),
    days AS (
        SELECT p.pair_no, p.student_id, d.date
        FROM pop p
        JOIN read_parquet('{files["spells"]}') s ON s.student_id = p.student_id
        JOIN read_parquet('{files["calendar"]}') d
          ON d.school_id = s.school_id AND d.date >= s.from_date AND d.date <= s.to_date
         AND d.date < p.as_of
    ),
    att AS (
        SELECT student_id, CAST(date AS DATE) AS date,
               max(CASE status WHEN 'late' THEN 1 WHEN 'leave_personal' THEN 2
                   WHEN 'leave_sick' THEN 3 WHEN 'absent_unexcused' THEN 4 ELSE 0 END) AS code
        FROM read_parquet('{files["attendance"]}')
        GROUP BY ALL
    ),
    numbered AS (
        SELECT d.pair_no, coalesce(a.code, 0) AS code,
               row_number() OVER (PARTITION BY d.pair_no ORDER BY d.date DESC) AS back
        FROM days d LEFT JOIN att a ON a.student_id = d.student_id AND a.date = d.date
    ),
    counted AS (
        SELECT pair_no, count(*) AS kk,
               {counts},
               count(*) FILTER (WHERE code = 1 AND back <= 30) AS late_30d,
               coalesce(min(back) FILTER (WHERE code <> 4), count(*) + 1) - 1 AS unexcused_run,
               count(*) FILTER (WHERE code = 4 AND back > 30 AND back <= 60) AS unexcused_30_60
        FROM numbered GROUP BY pair_no
    ),
    full_rows AS (
        SELECT p.pair_no, p.student_id, p.as_of, coalesce(c.kk, 0) AS kk,
               coalesce(c.unexcused_30_60, 0) AS unexcused_30_60, {plain}
        FROM pop p LEFT JOIN counted c USING (pair_no)
    )
    SELECT student_id, as_of,
           {", ".join(c for c in WINDOW_COLUMNS[: 2 * len(WINDOWS)])},
           {rates},
           late_30d, unexcused_run, least(unexcused_run, 3) AS escalation_level,
           least(kk, 90) AS active_days_90d,
           CASE WHEN kk > 30
                THEN unexcused_30d / 30 - unexcused_30_60 / least(30, kk - 30) END
               AS unexcused_trend_30d
    FROM full_rows ORDER BY pair_no
    """


def reference_attendance(files: dict[str, Path], *, threads: int = 2) -> pd.DataFrame:
    """Run the reference query; one row per population row, in its order."""
    import duckdb

    con = duckdb.connect(config={"threads": threads})
    try:
        return con.sql(_query(files)).df()
    finally:
        con.close()


def write_inputs(
    folder: Path,
    *,
    population: pd.DataFrame,
    spells: pd.DataFrame,
    calendar: pd.DataFrame,
    attendance: pd.DataFrame,
) -> dict[str, Path]:
    """Write the reference's four Parquet inputs into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = {
        "population": population.loc[:, ["student_id", "as_of"]],
        "spells": spells.loc[:, ["student_id", "school_id", "from_date", "to_date"]],
        "calendar": calendar.loc[:, ["school_id", "date"]].drop_duplicates(),
        "attendance": attendance.loc[:, ["student_id", "date", "status"]],
    }
    paths: dict[str, Path] = {}
    for name, frame in frames.items():
        out = frame.copy()
        for column in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[column]):
                out[column] = out[column].dt.date  # DATE in Parquet, as the query compares
            else:
                out[column] = out[column].astype("str")
        paths[name] = folder / f"{name}.parquet"
        out.to_parquet(paths[name], index=False)
    return paths
