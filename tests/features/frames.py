"""Hand-made tiny tables for the feature tests (no generator, every value visible).

`tables(...)` fills in any table a test does not care about with a minimal valid one:
one school ``S1``, students from `student(...)`, enrolments for school year 2024 at S1.
Dates are strings ``YYYY-MM-DD`` in the builders and become datetime64[ns].
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from features.tables import COLUMNS, RawTables, empty_table


def ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day)


def weekdays(start: str, end: str, *, skip: Iterable[str] = ()) -> list[pd.Timestamp]:
    """Monday-Friday dates in ``[start, end]`` minus `skip` (holidays)."""
    days = pd.bdate_range(start, end)
    skipped = {pd.Timestamp(d) for d in skip}
    return [d for d in days if d not in skipped]


def calendar(days_by_school: dict[str, Sequence[pd.Timestamp]]) -> pd.DataFrame:
    rows = [(school, day) for school, days in days_by_school.items() for day in days]
    return frame("calendar", rows, ["school_id", "date"])


def frame(name: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> pd.DataFrame:
    """A table from rows; date columns become datetime64[ns], ids str."""
    out = pd.DataFrame(list(rows), columns=list(columns))
    for col in out.columns:
        if col in ("date", "birth_date", "start_date", "end_date"):
            out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
        elif col in ("student_id", "school_id", "class_id", "status", "event", "exam", "subject"):
            out[col] = out[col].astype("str")
        elif col in ("school_year", "grade_level", "term"):
            out[col] = out[col].astype("int64")
        elif col in ("score", "max_score", "value"):
            out[col] = out[col].astype("float64")
    if out.empty:
        out = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
        for col in columns:
            if col in ("date", "birth_date", "start_date", "end_date"):
                out[col] = out[col].astype("datetime64[ns]")
    return out


def student(student_id: str, **attrs: Any) -> dict[str, Any]:
    """A students row with every flag off, born 2012-03-01, unless `attrs` says otherwise."""
    row: dict[str, Any] = {
        "student_id": student_id,
        "sex": "F",
        "birth_date": "2012-03-01",
        "poverty_registered": False,
        "dibao": False,
        "tekun": False,
        "disability": False,
        "orphan": False,
        "single_parent": False,
        "left_behind": "none",
        "migrant_child": False,
        "guardian": "parents",
        "boarding": False,
    }
    row.update(attrs)
    return row


def students(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(list(rows))
    out["birth_date"] = pd.to_datetime(out["birth_date"]).astype("datetime64[ns]")
    out["student_id"] = out["student_id"].astype("str")
    return out


SCHOOLS = frame(
    "schools",
    [("S1", "一中", "A县", "甲镇", "junior", True), ("S2", "二中", "A县", "乙镇", "junior", False)],
    COLUMNS["schools"],
)

# School year 2024: 2024-09-02 .. 2025-01-17, 2025-02-17 .. 2025-06-27, National Day off.
TERM1 = weekdays("2024-09-02", "2025-01-17", skip=pd.date_range("2024-10-01", "2024-10-07"))
TERM2 = weekdays("2025-02-17", "2025-06-27")
YEAR_2024 = TERM1 + TERM2


def tables(
    *,
    students_rows: Sequence[dict[str, Any]] | None = None,
    calendar_frame: pd.DataFrame | None = None,
    enrolments: Sequence[Sequence[Any]] | None = None,
    attendance: Sequence[Sequence[Any]] = (),
    grades: Sequence[Sequence[Any]] = (),
    status_events: Sequence[Sequence[Any]] = (),
    student_attributes: Sequence[Sequence[Any]] = (),
) -> RawTables:
    """A RawTables from small row lists.

    `enrolments` rows are (student_id, school_year, school_id, class_id, grade_level) or
    with (start_date, end_date) appended; default: every student at S1, class C1,
    grade 7, school year 2024.
    """
    studs = students(students_rows or [student("A")])
    if enrolments is None:
        enrolments = [(s, 2024, "S1", "C1", 7) for s in studs["student_id"]]
    cols = (
        list(COLUMNS["enrolments"][: len(enrolments[0])]) if enrolments else COLUMNS["enrolments"]
    )
    attrs = (
        frame("student_attributes", student_attributes, COLUMNS["student_attributes"])
        if student_attributes
        else empty_table("student_attributes")
    )
    return RawTables(
        schools=SCHOOLS,
        calendar=calendar_frame if calendar_frame is not None else calendar({"S1": YEAR_2024}),
        students=studs,
        enrolments=frame("enrolments", enrolments, cols),
        attendance=frame("attendance", attendance, COLUMNS["attendance"]),
        grades=frame("grades", grades, COLUMNS["grades"]),
        status_events=frame("status_events", status_events, COLUMNS["status_events"]),
        interventions=empty_table("interventions"),
        student_attributes=attrs,
    )
