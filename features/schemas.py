"""pandera models for every raw table of an export (see docs/data-contract.md).

The models describe the frames *after* reading: the in-memory dtypes of
`features.tables` (ids and codes `str`, dates `datetime64[ns]`, booleans `bool`, whole
numbers `int64`, numbers `float64`), the allowed codes, the ranges and the keys that must
be unique. `features.validation` turns their failures into `Violation`s.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from features.tables import (
    ATTENDANCE_STATUSES,
    COLUMNS,
    EVENTS,
    EXAMS,
    GUARDIANS,
    INTERVENTION_KINDS,
    LEFT_BEHIND,
    OUTCOMES,
    ROLES,
    SCHOOL_LEVELS,
    SEXES,
)

logger = logging.getLogger(__name__)

# A school year is named by the calendar year it starts in; anything outside this range
# is a typing mistake (e.g. 20024 or 24), not a real year.
MIN_SCHOOL_YEAR = 1990
MAX_SCHOOL_YEAR = 2100

Kind = Literal["str", "date", "bool", "int", "float"]


class _Base(pa.DataFrameModel):
    class Config:
        coerce = True
        strict = True


class SchoolsModel(_Base):
    """`schools`: one row per school."""

    school_id: Series[str]
    name: Series[str]
    county: Series[str]
    township: Series[str]
    level: Series[str] = pa.Field(isin=list(SCHOOL_LEVELS))
    rural: Series[bool]

    class Config:
        unique = ["school_id"]


class CalendarModel(_Base):
    """`calendar`: one row per school day per school."""

    school_id: Series[str]
    date: Series[pd.Timestamp]

    class Config:
        unique = ["school_id", "date"]


class StudentsModel(_Base):
    """`students`: attributes as known at export (`ethnic_minority` is optional)."""

    student_id: Series[str]
    sex: Series[str] = pa.Field(isin=list(SEXES))
    birth_date: Series[pd.Timestamp]
    poverty_registered: Series[bool]
    dibao: Series[bool]
    tekun: Series[bool]
    disability: Series[bool]
    orphan: Series[bool]
    single_parent: Series[bool]
    left_behind: Series[str] = pa.Field(isin=list(LEFT_BEHIND))
    migrant_child: Series[bool]
    guardian: Series[str] = pa.Field(isin=list(GUARDIANS))
    boarding: Series[bool]
    ethnic_minority: Series[bool]

    class Config:
        unique = ["student_id"]


class EnrolmentsModel(_Base):
    """`enrolments`: where each student sits in each school year, and when."""

    student_id: Series[str]
    school_year: Series[np.int64] = pa.Field(ge=MIN_SCHOOL_YEAR, le=MAX_SCHOOL_YEAR)
    school_id: Series[str]
    class_id: Series[str]
    grade_level: Series[np.int64] = pa.Field(ge=1, le=9)
    start_date: Series[pd.Timestamp]
    end_date: Series[pd.Timestamp]

    class Config:
        unique = ["student_id", "school_year"]


class AttendanceModel(_Base):
    """`attendance`: a row per student per school day not simply present."""

    student_id: Series[str]
    date: Series[pd.Timestamp]
    status: Series[str] = pa.Field(isin=list(ATTENDANCE_STATUSES))

    class Config:
        unique = ["student_id", "date"]


class GradesModel(_Base):
    """`grades`: exam results; `score` is missing for a missed exam (缺考)."""

    student_id: Series[str]
    school_year: Series[np.int64] = pa.Field(ge=MIN_SCHOOL_YEAR, le=MAX_SCHOOL_YEAR)
    term: Series[np.int64] = pa.Field(isin=[1, 2])
    exam: Series[str] = pa.Field(isin=list(EXAMS))
    subject: Series[str]
    score: Series[float] = pa.Field(nullable=True, ge=0)
    max_score: Series[float] = pa.Field(gt=0)
    date: Series[pd.Timestamp]

    class Config:
        unique = ["student_id", "school_year", "term", "exam", "subject"]


class StatusEventsModel(_Base):
    """`status_events`: changes of enrolment status (the dropout label comes from here)."""

    student_id: Series[str]
    date: Series[pd.Timestamp]
    event: Series[str] = pa.Field(isin=list(EVENTS))
    school_id: Series[str]


class InterventionsModel(_Base):
    """`interventions` (optional): what was done for a student, by whom, with what outcome."""

    student_id: Series[str]
    date: Series[pd.Timestamp]
    kind: Series[str] = pa.Field(isin=list(INTERVENTION_KINDS))
    by_role: Series[str] = pa.Field(isin=list(ROLES))
    outcome: Series[str] = pa.Field(isin=list(OUTCOMES))


class StudentAttributesModel(_Base):
    """`student_attributes` (optional): extra numeric attributes, one per student and name."""

    student_id: Series[str]
    attribute: Series[str]
    value: Series[float]

    class Config:
        unique = ["student_id", "attribute"]


MODELS: dict[str, type[pa.DataFrameModel]] = {
    "schools": SchoolsModel,
    "calendar": CalendarModel,
    "students": StudentsModel,
    "enrolments": EnrolmentsModel,
    "attendance": AttendanceModel,
    "grades": GradesModel,
    "status_events": StatusEventsModel,
    "interventions": InterventionsModel,
    "student_attributes": StudentAttributesModel,
}

# Keys that identify one row; duplicates are reported as `duplicate_key`.
KEYS: dict[str, tuple[str, ...]] = {
    "schools": ("school_id",),
    "calendar": ("school_id", "date"),
    "students": ("student_id",),
    "enrolments": ("student_id", "school_year"),
    "attendance": ("student_id", "date"),
    "grades": ("student_id", "school_year", "term", "exam", "subject"),
    "student_attributes": ("student_id", "attribute"),
}

# Tables that must have at least one row (a header-only file is an error).
NON_EMPTY_TABLES: tuple[str, ...] = ("schools", "calendar", "students", "enrolments")

_KIND_BY_DTYPE: dict[str, Kind] = {
    "datetime64[ns]": "date",
    "bool": "bool",
    "int64": "int",
    "float64": "float",
}
_PANDAS_DTYPE: dict[Kind, str] = {
    "str": "str",
    "date": "datetime64[ns]",
    "bool": "bool",
    "int": "int64",
    "float": "float64",
}


def schema(name: str) -> pa.DataFrameSchema:
    """The pandera schema of table `name`."""
    return MODELS[name].to_schema()


def column_kinds(name: str) -> dict[str, Kind]:
    """Each column of table `name` (in contract order) and how its cells are read."""
    columns = schema(name).columns
    return {col: _kind(columns[col].dtype.type) for col in COLUMNS[name]}


def _kind(dtype: object) -> Kind:
    """The reading kind of a pandera column dtype (pandas' `str` shows as string[pyarrow])."""
    if isinstance(dtype, pd.StringDtype):
        return "str"
    return _KIND_BY_DTYPE[str(dtype)]


def nullable_columns(name: str) -> frozenset[str]:
    """Columns of table `name` whose cells may be empty."""
    return frozenset(c for c, col in schema(name).columns.items() if col.nullable)


def pandas_dtype(kind: Kind) -> str:
    """The in-memory dtype of a column of this kind."""
    return _PANDAS_DTYPE[kind]


def empty_frame(name: str) -> pd.DataFrame:
    """An empty frame of table `name` with its columns in their in-memory dtypes."""
    return pd.DataFrame(
        {col: pd.Series(dtype=pandas_dtype(kind)) for col, kind in column_kinds(name).items()}
    )
