"""Broken-feed checks on an export: the one place that decides whether a school's records
stopped arriving. `training.drift` puts them in the drift report and the county dashboard
(`serving.pages.views`) shows them per school, so both import them from here.

Each check is a `FeedWarning` naming the school:

* ``no_absences``: no absences recorded (any non-``present`` attendance row) in the
  school's last `FEED_WEEKS` complete school weeks before `date_to`, although it recorded
  absences earlier;
* ``no_grades``: a whole term of the window with school days but no exam results
  (a grade dated from the term's first day up to `GRADES_GRACE_DAYS` after its last;
  a term is checked once that grace has passed by `date_to`);
* ``calendar_stops``: the school's calendar stops more than `CALENDAR_GRACE_DAYS` before
  the county's last school day in the window.

Pure: frames and dates in, warnings out.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pandas as pd

from features.school_calendar import school_terms
from features.tables import RawTables, default_enrolment_end, default_enrolment_start

logger = logging.getLogger(__name__)

FEED_WEEKS = 2
CALENDAR_GRACE_DAYS = 7
GRADES_GRACE_DAYS = 14
CHECKS = ("calendar_stops", "no_absences", "no_grades")
# What each check means, for pages: (Chinese, English).
CHECK_TEXT: dict[str, tuple[str, str]] = {
    "no_absences": (
        f"连续{FEED_WEEKS}个教学周未记录任何缺勤，考勤数据可能中断",
        f"no absences recorded for {FEED_WEEKS} school weeks; the attendance feed may be broken",
    ),
    "no_grades": (
        "整个学期没有成绩记录，成绩数据可能中断",
        "a whole term without exam results; the grades feed may be broken",
    ),
    "calendar_stops": (
        "校历提前中断，校历数据可能中断",
        "the school calendar stops early; the calendar feed may have stopped",
    ),
}


@dataclass(frozen=True)
class FeedWarning:
    """One broken-feed finding: ``check`` is ``no_absences``, ``no_grades`` or
    ``calendar_stops``; ``message`` is the sentence shown to people."""

    school_id: str
    check: str
    message: str

    def summary(self, lang: str = "zh") -> str:
        """What the check means in `lang` (``zh`` or ``en``), without the dates."""
        return CHECK_TEXT[self.check][1 if lang == "en" else 0]


def _ts(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day)


def school_of_rows(tables: RawTables, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (``student_id``, ``date``) with the ``school_id`` of the enrolment in force
    on that date (a row without one is dropped; overlapping enrolments give both)."""
    enr = tables.enrolments
    starts = (
        pd.to_datetime(enr["start_date"])
        if "start_date" in enr.columns
        else pd.Series(pd.NaT, index=enr.index)
    )
    ends = (
        pd.to_datetime(enr["end_date"])
        if "end_date" in enr.columns
        else pd.Series(pd.NaT, index=enr.index)
    )
    spells = pd.DataFrame(
        {
            "student_id": enr["student_id"].astype("str"),
            "school_id": enr["school_id"].astype("str"),
            "start": starts.fillna(enr["school_year"].map(default_enrolment_start)),
            "end": ends.fillna(enr["school_year"].map(default_enrolment_end)),
        }
    )
    left = pd.DataFrame(
        {"student_id": rows["student_id"].astype("str"), "date": pd.to_datetime(rows["date"])}
    )
    merged = left.merge(spells, on="student_id", how="inner")
    inside = (merged["date"] >= merged["start"]) & (merged["date"] <= merged["end"])
    return merged.loc[inside, ["student_id", "date", "school_id"]]


def school_weeks(days: pd.Series, *, date_to: dt.date) -> list[pd.Timestamp]:
    """Mondays of the calendar weeks (Monday-Sunday) with a school day that end on or
    before `date_to`, in order."""
    days = days[days <= _ts(date_to)]
    mondays = (days - pd.to_timedelta(days.dt.day_of_week, unit="D")).drop_duplicates()
    complete = mondays[mondays + pd.Timedelta(days=6) <= _ts(date_to)]
    return sorted(complete)


def feed_warnings(
    tables: RawTables,
    *,
    date_from: dt.date,
    date_to: dt.date,
    since: dt.date | None = None,
) -> list[FeedWarning]:
    """Broken-feed checks for the window ``[date_from, date_to]`` (see the module docs).

    Parameters
    ----------
    tables : RawTables
        Uses `calendar`, `enrolments`, `attendance` and `grades`.
    date_from, date_to : datetime.date
        The recent window, both days included.
    since : datetime.date, optional
        Earliest date whose absences count as "had absences before" (default: all).

    Returns
    -------
    list of FeedWarning
        Ordered by school_id, then check.
    """
    found: list[FeedWarning] = []
    calendar = pd.DataFrame(
        {
            "school_id": tables.calendar["school_id"].astype("str"),
            "date": pd.to_datetime(tables.calendar["date"]),
        }
    ).drop_duplicates()
    if calendar.empty:
        return found
    start, end = _ts(date_from), _ts(date_to)
    schools = sorted(calendar["school_id"].unique())

    # calendar stops before the window ends
    upto = calendar[calendar["date"] <= end]
    county_last = upto["date"].max() if not upto.empty else pd.NaT
    for school in schools:
        own = upto.loc[upto["school_id"] == school, "date"]
        last = own.max() if not own.empty else pd.NaT
        if pd.isna(county_last) or county_last < start:
            break
        if pd.isna(last) or last < county_last - pd.Timedelta(days=CALENDAR_GRACE_DAYS):
            when = "has no school days" if pd.isna(last) else f"ends on {last.date()}"
            found.append(
                FeedWarning(
                    school,
                    "calendar_stops",
                    f"School {school}: its calendar {when}, but other schools have school "
                    f"days until {county_last.date()} (window ends {date_to}); the calendar "
                    "feed may have stopped.",
                )
            )

    # no absences in the last two school weeks, although there were some before
    att = tables.attendance
    absences = att.loc[att["status"].astype("str") != "present", ["student_id", "date"]]
    by_school = school_of_rows(tables, absences)
    for school in schools:
        weeks = school_weeks(calendar.loc[calendar["school_id"] == school, "date"], date_to=date_to)
        if len(weeks) < FEED_WEEKS + 1 or weeks[-1] + pd.Timedelta(days=6) < start:
            continue
        recent_start = weeks[-FEED_WEEKS]
        recent_end = weeks[-1] + pd.Timedelta(days=6)
        dates = by_school.loc[by_school["school_id"] == school, "date"]
        earlier = dates < recent_start
        if since is not None:
            earlier &= dates >= _ts(since)
        recent = (dates >= recent_start) & (dates <= recent_end)
        if earlier.any() and not recent.any():
            found.append(
                FeedWarning(
                    school,
                    "no_absences",
                    f"School {school}: no absences recorded from {recent_start.date()} to "
                    f"{recent_end.date()} (its last {FEED_WEEKS} school weeks), though it "
                    f"recorded {int(earlier.sum())} before; the attendance feed may be broken.",
                )
            )

    # a whole term of the window with school days but no exam results
    # only terms whose grades are due by date_to: a school entering its finals in the
    # GRADES_GRACE_DAYS after the term is not a broken feed yet
    grace = pd.Timedelta(days=GRADES_GRACE_DAYS)
    terms = school_terms(calendar)
    terms = terms[(terms["term_end"] + grace <= end) & (terms["term_end"] >= start)]
    graded = school_of_rows(tables, tables.grades.loc[:, ["student_id", "date"]])
    for term in terms.itertuples(index=False):
        school = str(term.school_id)
        dates = graded.loc[graded["school_id"] == school, "date"]
        last = term.term_end + grace
        if not ((dates >= term.term_start) & (dates <= last)).any():
            found.append(
                FeedWarning(
                    school,
                    "no_grades",
                    f"School {school}: {int(term.n_days)} school days from "
                    f"{term.term_start.date()} to {term.term_end.date()} but no exam results "
                    "recorded for that term; the grades feed may be broken.",
                )
            )
    found.sort(key=lambda w: (w.school_id, w.check))
    logger.info(
        "feed checks %s .. %s: %d warnings for %d schools",
        date_from,
        date_to,
        len(found),
        len({w.school_id for w in found}),
    )
    return found
