"""School days and terms, derived per school from the `calendar` table.

The calendar lists one row per school day per school (docs/data-contract.md); a date that
is not listed is not a school day. Terms are not exported, so they are derived here:

* A **term** is a run of school days with no break of `TERM_BREAK_DAYS` (14) or more
  calendar days without school between two consecutive school days. Weekends, the
  National Day week and the Qingming / May Day holidays are shorter and stay inside a
  term; the winter (Spring Festival) and summer breaks are longer and end a term.
* A term whose first school day falls in January-March is a ``"spring"`` start (the
  return after the Spring Festival, 春季开学); one that starts in August-October is a
  ``"september"`` start (秋季开学); any other start is ``"other"``. The month ranges are
  wide on purpose: an export that maps e.g. university terms into this contract (terms
  from 1 February and 1 October, every calendar day a school day) classifies the same way.

Everything here is a pure function of the calendar. Deriving terms looks only at gaps
between consecutive school days, so school days added on or after an `as_of` never change
the term, term start or day number of an earlier school day (the no-leakage property the
snapshot relies on).
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

TERM_BREAK_DAYS = 14
"""A break of at least this many calendar days without school starts a new term."""

SPRING_START_MONTHS = (1, 2, 3)
SEPTEMBER_START_MONTHS = (8, 9, 10)
TERM_KINDS = ("spring", "september", "other")


def term_kind(start: dt.date | pd.Timestamp) -> str:
    """``"spring"``, ``"september"`` or ``"other"`` for a term starting on `start`."""
    month = start.month
    if month in SPRING_START_MONTHS:
        return "spring"
    if month in SEPTEMBER_START_MONTHS:
        return "september"
    return "other"


def school_days(calendar: pd.DataFrame) -> pd.DataFrame:
    """Every school day of every school, numbered, with its term.

    Parameters
    ----------
    calendar : pd.DataFrame
        The `calendar` table: ``school_id`` (str), ``date`` (datetime64). Duplicate rows
        are ignored.

    Returns
    -------
    pd.DataFrame
        One row per (``school_id``, ``date``), sorted by both, with ``day_no`` (int64,
        1 for the school's first listed school day), ``term_no`` (int64, 1 for its first
        term), ``term_start`` (datetime64[ns], first school day of the term),
        ``term_kind`` (str, see `term_kind`) and ``day_in_term`` (int64, 1 on the term's
        first school day).
    """
    days = pd.DataFrame(
        {
            "school_id": calendar["school_id"].astype("str"),
            "date": pd.to_datetime(calendar["date"]).dt.normalize().astype("datetime64[ns]"),
        }
    )
    days = days.drop_duplicates().sort_values(["school_id", "date"], kind="stable")
    days = days.reset_index(drop=True)
    if days.empty:
        return days.assign(
            day_no=pd.Series(dtype="int64"),
            term_no=pd.Series(dtype="int64"),
            term_start=pd.Series(dtype="datetime64[ns]"),
            term_kind=pd.Series(dtype="str"),
            day_in_term=pd.Series(dtype="int64"),
        )
    school = days["school_id"].to_numpy()
    dates = days["date"].to_numpy()
    first_of_school = np.r_[True, school[1:] != school[:-1]]
    gap_days = np.r_[0, (dates[1:] - dates[:-1]).astype("timedelta64[D]").astype(np.int64)]
    # Calendar days without school between two consecutive school days: gap - 1.
    new_term = first_of_school | (gap_days - 1 >= TERM_BREAK_DAYS)
    # Rows are sorted by school and date, so numbering within a school or a term is the
    # row position minus the position of the school's (term's) first row: plain numpy,
    # no groupby (a groupby costs about a millisecond even for one school's 200 days).
    position = np.arange(len(days), dtype=np.int64)
    school_first = np.maximum.accumulate(np.where(first_of_school, position, 0))
    term_first = np.maximum.accumulate(np.where(new_term, position, 0))
    terms_so_far = np.cumsum(new_term, dtype=np.int64)
    term_start = dates[term_first]
    kinds = np.array([term_kind(dt.date(2000, m, 1)) for m in range(1, 13)], dtype=object)
    months = term_start.astype("datetime64[M]").astype(np.int64) % 12
    return pd.DataFrame(
        {
            "school_id": days["school_id"],
            "date": days["date"],
            "day_no": position - school_first + 1,
            "term_no": terms_so_far - terms_so_far[school_first] + 1,
            "term_start": pd.Series(term_start, dtype="datetime64[ns]"),
            "term_kind": pd.Series(kinds[months], dtype="str"),
            "day_in_term": position - term_first + 1,
        }
    )


def school_terms(calendar: pd.DataFrame, *, days: pd.DataFrame | None = None) -> pd.DataFrame:
    """The terms of every school.

    Parameters
    ----------
    calendar : pd.DataFrame
        The `calendar` table (``school_id``, ``date``).
    days : pd.DataFrame, optional
        `school_days(calendar)`, when the caller already has it.

    Returns
    -------
    pd.DataFrame
        One row per (``school_id``, ``term_no``): ``term_start`` and ``term_end``
        (datetime64[ns], first and last school day), ``term_kind`` (str),
        ``first_day_no`` and ``last_day_no`` (int64, as in `school_days`) and
        ``n_days`` (int64, school days in the term).
    """
    days = school_days(calendar) if days is None else days
    if not days.empty:
        # `days` is sorted by school and date: a term's first and last rows bound it.
        term_no = days["term_no"].to_numpy()
        first = days["day_in_term"].to_numpy() == 1
        last = np.r_[first[1:], True]
        day_no = days["day_no"].to_numpy()
        terms = pd.DataFrame(
            {
                "school_id": days["school_id"].to_numpy()[first],
                "term_no": term_no[first],
                "term_start": days["date"].to_numpy()[first],
                "term_end": days["date"].to_numpy()[last],
                "term_kind": days["term_kind"].to_numpy()[first],
                "first_day_no": day_no[first],
                "last_day_no": day_no[last],
            }
        ).astype({"school_id": "str", "term_kind": "str", "term_no": "int64"})
        terms["n_days"] = terms["last_day_no"] - terms["first_day_no"] + 1
        return terms
    terms = (
        days.groupby(["school_id", "term_no"], as_index=False, sort=True)
        .agg(
            term_start=("date", "min"),
            term_end=("date", "max"),
            term_kind=("term_kind", "first"),
            first_day_no=("day_no", "min"),
            last_day_no=("day_no", "max"),
        )
        .astype({"first_day_no": "int64", "last_day_no": "int64"})
    )
    terms["n_days"] = terms["last_day_no"] - terms["first_day_no"] + 1
    return terms


def school_days_between(
    calendar: pd.DataFrame, *, school_id: str, start: dt.date, end: dt.date
) -> int:
    """Number of school days of `school_id` in ``[start, end)``."""
    rows = calendar[calendar["school_id"] == school_id]
    dates = pd.to_datetime(rows["date"]).dt.normalize().drop_duplicates()
    return int(((dates >= pd.Timestamp(start)) & (dates < pd.Timestamp(end))).sum())
