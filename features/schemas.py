"""pandera schemas for every raw table of an export (see docs/data-contract.md).

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

# Names and class names: a sane length, and no control characters (line breaks, tabs,
# NUL, the C1 range) or the invisible Unicode controls that reorder or split a line
# (bidi overrides and isolates, line/paragraph separators). Minority names written in
# Chinese with a middle dot (阿卜杜热合曼·买买提明) stay far below the limit.
MAX_NAME_CHARS = 64
MAX_CLASS_NAME_CHARS = 64
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
NO_CONTROL_CHARACTERS = rf"[^{CONTROL_CHARACTERS}]*\Z"

Kind = Literal["str", "date", "bool", "int", "float"]


def _str(*checks: pa.Check) -> pa.Column:
    return pa.Column(str, checks=list(checks))


def _text(max_chars: int) -> pa.Column:
    """Optional free text (may be missing): at most `max_chars` characters, no control
    characters."""
    checks = [pa.Check.str_length(max_value=max_chars), pa.Check.str_matches(NO_CONTROL_CHARACTERS)]
    return pa.Column(str, checks=checks, nullable=True)


def _date() -> pa.Column:
    return pa.Column("datetime64[ns]")


def _bool() -> pa.Column:
    return pa.Column(bool)


def _int(*checks: pa.Check) -> pa.Column:
    return pa.Column(np.int64, checks=list(checks))


def _float(*checks: pa.Check, nullable: bool = False) -> pa.Column:
    return pa.Column(np.float64, checks=list(checks), nullable=nullable)


def _table(
    name: str, description: str, columns: dict[str, pa.Column], unique: list[str] | None = None
) -> pa.DataFrameSchema:
    """A table's schema: cells coerced to the in-memory dtypes, no other columns."""
    return pa.DataFrameSchema(
        {col: column.set_name(col) for col, column in columns.items()},
        coerce=True,
        strict=True,
        unique=unique,
        name=name,
        description=description,
    )


_SCHOOL_YEAR = (pa.Check.ge(MIN_SCHOOL_YEAR), pa.Check.le(MAX_SCHOOL_YEAR))

# pandera's object API, not `DataFrameModel` classes: turning a model class into a schema
# resolves its annotations through every pandera typing module, which imports
# `dask.dataframe` when Dask is installed: about a second on the first request the
# service validates (the start-up benchmark waits for that request).
SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "schools": _table(
        "SchoolsModel",
        "`schools`: one row per school.",
        {
            "school_id": _str(),
            "name": _str(),
            "county": _str(),
            "township": _str(),
            "level": _str(pa.Check.isin(list(SCHOOL_LEVELS))),
            "rural": _bool(),
        },
        unique=["school_id"],
    ),
    "calendar": _table(
        "CalendarModel",
        "`calendar`: one row per school day per school.",
        {"school_id": _str(), "date": _date()},
        unique=["school_id", "date"],
    ),
    "students": _table(
        "StudentsModel",
        "`students`: attributes as known at export (`ethnic_minority` and `name` are optional).",
        {
            "student_id": _str(),
            "sex": _str(pa.Check.isin(list(SEXES))),
            "birth_date": _date(),
            "poverty_registered": _bool(),
            "dibao": _bool(),
            "tekun": _bool(),
            "disability": _bool(),
            "orphan": _bool(),
            "single_parent": _bool(),
            "left_behind": _str(pa.Check.isin(list(LEFT_BEHIND))),
            "migrant_child": _bool(),
            "guardian": _str(pa.Check.isin(list(GUARDIANS))),
            "boarding": _bool(),
            "ethnic_minority": _bool(),
            "name": _text(MAX_NAME_CHARS),
        },
        unique=["student_id"],
    ),
    "enrolments": _table(
        "EnrolmentsModel",
        "`enrolments`: where each student sits in each school year, and when.",
        {
            "student_id": _str(),
            "school_year": _int(*_SCHOOL_YEAR),
            "school_id": _str(),
            "class_id": _str(),
            "grade_level": _int(pa.Check.ge(1), pa.Check.le(9)),
            "start_date": _date(),
            "end_date": _date(),
            "class_name": _text(MAX_CLASS_NAME_CHARS),
        },
        unique=["student_id", "school_year"],
    ),
    "attendance": _table(
        "AttendanceModel",
        "`attendance`: a row per student per school day not simply present.",
        {
            "student_id": _str(),
            "date": _date(),
            "status": _str(pa.Check.isin(list(ATTENDANCE_STATUSES))),
        },
        unique=["student_id", "date"],
    ),
    "grades": _table(
        "GradesModel",
        "`grades`: exam results; `score` is missing for a missed exam (缺考).",
        {
            "student_id": _str(),
            "school_year": _int(*_SCHOOL_YEAR),
            "term": _int(pa.Check.isin([1, 2])),
            "exam": _str(pa.Check.isin(list(EXAMS))),
            "subject": _str(),
            "score": _float(pa.Check.ge(0), nullable=True),
            "max_score": _float(pa.Check.gt(0)),
            "date": _date(),
        },
        unique=["student_id", "school_year", "term", "exam", "subject"],
    ),
    "status_events": _table(
        "StatusEventsModel",
        "`status_events`: changes of enrolment status (the dropout label comes from here).",
        {
            "student_id": _str(),
            "date": _date(),
            "event": _str(pa.Check.isin(list(EVENTS))),
            "school_id": _str(),
        },
    ),
    "interventions": _table(
        "InterventionsModel",
        "`interventions` (optional): what was done for a student, by whom, with what outcome.",
        {
            "student_id": _str(),
            "date": _date(),
            "kind": _str(pa.Check.isin(list(INTERVENTION_KINDS))),
            "by_role": _str(pa.Check.isin(list(ROLES))),
            "outcome": _str(pa.Check.isin(list(OUTCOMES))),
        },
    ),
    "student_attributes": _table(
        "StudentAttributesModel",
        "`student_attributes` (optional): extra numeric attributes, one per student and name.",
        {"student_id": _str(), "attribute": _str(), "value": _float()},
        unique=["student_id", "attribute"],
    ),
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
    """The pandera schema of table `name` (shared: do not modify it)."""
    return SCHEMAS[name]


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
