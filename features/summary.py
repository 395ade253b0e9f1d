"""A one-screen summary of a validated export (what `baoxue validate` prints on success)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from features.tables import SCHOOL_LEVELS, RawTables

logger = logging.getLogger(__name__)

# A school year starts in August (see features.tables.default_enrolment_start).
SCHOOL_YEAR_START_MONTH = 8


@dataclass(frozen=True)
class ExportSummary:
    """Counts that tell a person whether an export is the one they meant.

    `students_by_year_grade` has one row per school year and one column per grade level
    (distinct students enrolled). `dropouts_by_school_year` counts `dropout` events by
    the school year of their date (a year starting in August).
    """

    rows: dict[str, int]
    first_day: pd.Timestamp | None
    last_day: pd.Timestamp | None
    school_days: int
    schools_by_level: dict[str, int]
    students: int
    students_by_year_grade: pd.DataFrame
    dropouts_by_school_year: dict[int, int]


def school_year_of(dates: pd.Series) -> pd.Series:
    """The school year (named by its starting calendar year) each date falls in."""
    years = dates.dt.year
    return (years - (dates.dt.month < SCHOOL_YEAR_START_MONTH).astype("int64")).astype("int64")


def summarize(tables: RawTables) -> ExportSummary:
    """Summarise a validated export (frames as in `features.schemas`)."""
    calendar = tables.calendar
    first = calendar["date"].min() if not calendar.empty else None
    last = calendar["date"].max() if not calendar.empty else None
    levels = tables.schools["level"].value_counts()
    by_level = {level: int(levels.get(level, 0)) for level in SCHOOL_LEVELS}
    enrolments = tables.enrolments
    by_year_grade = (
        enrolments.groupby(["school_year", "grade_level"])["student_id"]
        .nunique()
        .unstack("grade_level", fill_value=0)
        .sort_index()
    )
    by_year_grade.columns = [int(c) for c in by_year_grade.columns]
    events = tables.status_events
    dropouts = events.loc[events["event"] == "dropout", "date"]
    per_year = school_year_of(dropouts).value_counts().sort_index()
    return ExportSummary(
        rows={name: len(frame) for name, frame in tables.as_dict().items()},
        first_day=None if first is None or pd.isna(first) else pd.Timestamp(first),
        last_day=None if last is None or pd.isna(last) else pd.Timestamp(last),
        school_days=int(calendar["date"].nunique()),
        schools_by_level=by_level,
        students=int(tables.students["student_id"].nunique()),
        students_by_year_grade=by_year_grade,
        dropouts_by_school_year={int(y): int(n) for y, n in per_year.items()},
    )


def format_summary(summary: ExportSummary) -> str:
    """The summary as plain text, about one screen."""
    lines = ["Rows per table:"]
    width = max(len(name) for name in summary.rows)
    lines += [f"  {name:<{width}}  {n:>10,}" for name, n in summary.rows.items()]
    if summary.first_day is not None and summary.last_day is not None:
        lines.append(
            f"Calendar: {summary.first_day:%Y-%m-%d} .. {summary.last_day:%Y-%m-%d}"
            f" ({summary.school_days:,} distinct school days)"
        )
    levels = ", ".join(f"{level} {n}" for level, n in summary.schools_by_level.items())
    lines.append(f"Schools: {sum(summary.schools_by_level.values())} ({levels})")
    lines.append(f"Students: {summary.students:,}")
    lines.append("Students enrolled by school year (rows) and grade_level (columns):")
    lines += ["  " + line for line in _grid(summary.students_by_year_grade)]
    if summary.dropouts_by_school_year:
        counts = ", ".join(
            f"{y}-{(y + 1) % 100:02d}: {n}" for y, n in summary.dropouts_by_school_year.items()
        )
        lines.append(f"Dropout events by school year (Aug-Jul): {counts}")
    else:
        lines.append("Dropout events by school year (Aug-Jul): none")
    return "\n".join(lines)


def _grid(table: pd.DataFrame) -> list[str]:
    """A compact year x grade table of counts."""
    if table.empty:
        return ["(no enrolments)"]
    width = max(6, *(len(f"{int(v):,}") for v in table.to_numpy().ravel()))
    header = "year " + "".join(f"{'G' + str(c):>{width + 1}}" for c in table.columns)
    body = [
        f"{int(year):<5}" + "".join(f"{int(v):>{width + 1},}" for v in row)
        for year, row in zip(table.index, table.to_numpy(), strict=True)
    ]
    return [header, *body]
