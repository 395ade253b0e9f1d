"""The tables of one export, as they travel between modules once read and validated.

Column names and meanings follow docs/data-contract.md. After `features.sources.read_export`
every frame has these in-memory dtypes (the producers in `features.synthetic` and the
importers build the same):

* ids (`student_id`, `school_id`, `class_id`) and codes (`status`, `event`, ...): `str`
* text (`students.name`, `enrolments.class_name`, both optional, may be missing): `str`
* dates: `datetime64[ns]`, midnight, no time zone
* booleans: `bool`
* `school_year`, `grade_level`, `term`: `int64`
* `score`, `max_score`, `value`: `float64` (`score` is NaN for a missed exam, 缺考)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd

REQUIRED_TABLES: tuple[str, ...] = (
    "schools",
    "calendar",
    "students",
    "enrolments",
    "attendance",
    "grades",
    "status_events",
)
OPTIONAL_TABLES: tuple[str, ...] = ("interventions", "student_attributes")
ALL_TABLES: tuple[str, ...] = REQUIRED_TABLES + OPTIONAL_TABLES

# Columns of every table, in the contract's order. Optional columns are marked in
# OPTIONAL_COLUMNS; everything else is required.
COLUMNS: dict[str, tuple[str, ...]] = {
    "schools": ("school_id", "name", "county", "township", "level", "rural"),
    "calendar": ("school_id", "date"),
    "students": (
        "student_id",
        "sex",
        "birth_date",
        "poverty_registered",
        "dibao",
        "tekun",
        "disability",
        "orphan",
        "single_parent",
        "left_behind",
        "migrant_child",
        "guardian",
        "boarding",
        "ethnic_minority",
        "name",
    ),
    "enrolments": (
        "student_id",
        "school_year",
        "school_id",
        "class_id",
        "grade_level",
        "start_date",
        "end_date",
        "class_name",
    ),
    "attendance": ("student_id", "date", "status"),
    "grades": (
        "student_id",
        "school_year",
        "term",
        "exam",
        "subject",
        "score",
        "max_score",
        "date",
    ),
    "status_events": ("student_id", "date", "event", "school_id"),
    "interventions": ("student_id", "date", "kind", "by_role", "outcome"),
    "student_attributes": ("student_id", "attribute", "value"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "students": ("ethnic_minority", "name"),
    "enrolments": ("start_date", "end_date", "class_name"),
}
# Columns holding personal data (a pupil's name): never a feature, never in a log, an
# error message or a research export. Validation reports a bad cell here without its value.
PERSONAL_COLUMNS: dict[str, tuple[str, ...]] = {"students": ("name",)}

SCHOOL_LEVELS = ("primary", "junior", "nine_year")
SEXES = ("F", "M")
LEFT_BEHIND = ("none", "one_parent_away", "both_parents_away")
GUARDIANS = ("parents", "grandparents", "relatives", "other")
ATTENDANCE_STATUSES = ("present", "late", "leave_sick", "leave_personal", "absent_unexcused")
EXAMS = ("monthly", "midterm", "final")
EVENTS = (
    "enrol",
    "transfer_in",
    "transfer_out",
    "suspend",
    "resume",
    "dropout",
    "return",
    "graduate",
)
INTERVENTION_KINDS = (
    "home_visit",
    "phone_call",
    "talk_at_school",
    "counselling",
    "financial_aid",
    "peer_mentor",
    "proxy_parent",
    "send_teaching",
    "vocational_referral",
    "return_notice",
)
ROLES = ("homeroom_teacher", "subject_teacher", "principal", "township", "county")
OUTCOMES = ("contacted", "not_reached", "returned", "refused", "other")
HARDSHIP_FLAGS = ("poverty_registered", "dibao", "tekun", "disability", "orphan", "single_parent")

# Events after which a student is no longer in school, and those that bring one back.
LEAVING_EVENTS = ("transfer_out", "suspend", "dropout", "graduate")
ACTIVE_EVENTS = ("enrol", "transfer_in", "resume", "return")


def default_enrolment_start(school_year: int) -> pd.Timestamp:
    """First day an enrolment row is in force when the export gives no `start_date`."""
    return pd.Timestamp(year=school_year, month=8, day=1)


def default_enrolment_end(school_year: int) -> pd.Timestamp:
    """Last day an enrolment row is in force when the export gives no `end_date`."""
    return pd.Timestamp(year=school_year + 1, month=7, day=31)


def empty_table(name: str) -> pd.DataFrame:
    """An empty frame with the table's columns (used for absent optional tables)."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS[name]})


@dataclass(frozen=True)
class RawTables:
    """One county export, validated. Optional tables are empty frames when absent."""

    schools: pd.DataFrame
    calendar: pd.DataFrame
    students: pd.DataFrame
    enrolments: pd.DataFrame
    attendance: pd.DataFrame
    grades: pd.DataFrame
    status_events: pd.DataFrame
    interventions: pd.DataFrame
    student_attributes: pd.DataFrame

    def as_dict(self) -> dict[str, pd.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **frames: pd.DataFrame) -> RawTables:
        return RawTables(**{**self.as_dict(), **frames})


def fingerprint(tables: RawTables) -> str:
    """A short content hash of an export: the same tables give the same fingerprint,
    whatever the file format or row order on disk."""
    import hashlib

    digest = hashlib.sha256()
    for name, frame in tables.as_dict().items():
        digest.update(name.encode())
        if frame.empty:
            continue
        ordered = frame.sort_values(list(frame.columns)).reset_index(drop=True)
        hashed = pd.util.hash_pandas_object(ordered.astype(str), index=False)
        digest.update(hashed.to_numpy().tobytes())
    return digest.hexdigest()[:16]
