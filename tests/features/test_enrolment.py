"""Who is in the population on a date, active spells, and enrolment-history features."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.enrolment import active_spells, enrolled_population, enrolment_features
from tests.features import frames as F

D = dt.date


def members(tables: F.RawTables, day: dt.date) -> list[str]:
    population = enrolled_population(tables, as_ofs=[day])
    return population["student_id"].tolist()


@pytest.mark.parametrize(
    ("events", "day", "expected"),
    [
        ([], D(2024, 11, 4), True),  # no event at all: active
        ([("2024-11-04", "dropout")], D(2024, 11, 4), True),  # dated on as_of: not yet known
        ([("2024-11-04", "dropout")], D(2024, 11, 5), False),
        ([("2024-11-04", "dropout"), ("2024-11-20", "return")], D(2024, 11, 20), False),
        ([("2024-11-04", "dropout"), ("2024-11-20", "return")], D(2024, 11, 21), True),
        ([("2024-10-08", "transfer_out")], D(2024, 12, 2), False),
        ([("2024-10-08", "suspend")], D(2024, 12, 2), False),
        ([("2024-10-08", "suspend"), ("2024-12-02", "resume")], D(2024, 12, 3), True),
        ([("2025-01-10", "graduate")], D(2025, 3, 3), False),
        ([("2024-09-01", "enrol")], D(2024, 9, 2), True),
        # Out and back in on one day: leaving events apply first, so the day ends active.
        ([("2024-10-08", "transfer_out"), ("2024-10-08", "transfer_in")], D(2024, 10, 9), True),
        ([("2024-10-08", "dropout"), ("2024-10-08", "return")], D(2024, 10, 9), True),
    ],
)
def test_population_follows_status_events_before_as_of(
    events: list[tuple[str, str]], day: dt.date, expected: bool
) -> None:
    tables = F.tables(status_events=[("A", d, e, "S1") for d, e in events])
    assert members(tables, day) == (["A"] if expected else [])


@pytest.mark.parametrize(
    ("event", "back_next_year"),
    [("graduate", True), ("transfer_out", True), ("dropout", False), ("suspend", False)],
)
def test_a_later_enrolment_row_reopens_only_graduation_and_transfer(
    event: str, back_next_year: bool
) -> None:
    # Primary graduation recorded in July, then only the grade-7 row at the junior school,
    # with no enrol/transfer_in event: common in county exports.
    tables = F.tables(
        enrolments=[
            ("A", 2024, "S1", "C1", 6, "2024-08-01", "2025-07-31"),
            ("A", 2025, "S2", "C7", 7, "2025-08-01", "2026-07-31"),
        ],
        status_events=[("A", "2025-07-04", event, "S1")],
    )
    assert members(tables, D(2025, 7, 20)) == []
    assert members(tables, D(2025, 9, 8)) == (["A"] if back_next_year else [])


def test_enrolment_rows_are_in_force_between_their_default_dates() -> None:
    tables = F.tables()  # school year 2024, no start/end dates: 2024-08-01 .. 2025-07-31
    assert members(tables, D(2024, 7, 31)) == []
    assert members(tables, D(2024, 8, 1)) == ["A"]
    assert members(tables, D(2025, 7, 31)) == ["A"]
    assert members(tables, D(2025, 8, 1)) == []


def test_the_latest_starting_row_wins_and_gives_school_class_and_grade() -> None:
    tables = F.tables(
        enrolments=[
            ("A", 2024, "S1", "C1", 7, "2024-08-01", "2025-07-31"),
            ("A", 2024, "S2", "C9", 7, "2024-11-11", "2025-07-31"),
        ]
    )
    before, after = enrolled_population(
        tables, as_ofs=[D(2024, 11, 8), D(2024, 11, 12)]
    ).itertuples()
    assert (before.school_id, before.class_id) == ("S1", "C1")
    assert (after.school_id, after.class_id, after.grade_level, after.school_year) == (
        "S2",
        "C9",
        7,
        2024,
    )


def test_population_columns_and_order() -> None:
    tables = F.tables(students_rows=[F.student("B"), F.student("A")])
    population = enrolled_population(tables, as_ofs=[D(2024, 9, 9), D(2024, 9, 2), D(2024, 9, 9)])
    assert list(population.columns) == [
        "student_id",
        "as_of",
        "school_id",
        "class_id",
        "grade_level",
        "school_year",
    ]
    assert population["as_of"].dtype == "datetime64[ns]"
    assert population["grade_level"].dtype == "int64"
    assert list(zip(population["as_of"].dt.day, population["student_id"], strict=True)) == [
        (2, "A"),
        (2, "B"),
        (9, "A"),
        (9, "B"),
    ]


def test_active_spells_leave_out_days_between_dropout_and_return() -> None:
    tables = F.tables(
        status_events=[("A", "2024-11-04", "dropout", "S1"), ("A", "2024-11-20", "return", "S1")]
    )
    spells = active_spells(tables)
    assert list(zip(spells["from_date"], spells["to_date"], strict=True)) == [
        (F.ts("2024-08-01"), F.ts("2024-11-03")),
        (F.ts("2024-11-20"), F.ts("2025-07-31")),
    ]


def test_history_features_count_events_strictly_before_as_of() -> None:
    tables = F.tables(
        status_events=[
            ("A", "2024-09-01", "enrol", "S1"),
            ("A", "2024-10-10", "suspend", "S1"),
            ("A", "2024-10-21", "resume", "S1"),
            ("A", "2024-11-04", "dropout", "S1"),
            ("A", "2024-11-20", "return", "S1"),
        ]
    )
    population = enrolled_population(tables, as_ofs=[D(2024, 11, 20), D(2024, 12, 2)])
    assert population["as_of"].tolist() == [F.ts("2024-12-02")]  # not back on 11-20 yet
    features = enrolment_features(tables, population=population).iloc[0]
    assert features["dropout_returns"] == 1
    assert features["dropouts_before"] == 1
    assert features["suspensions"] == 1
    assert features["transfers_in"] == 0
    assert features["days_since_return"] == 12


def test_years_over_age_uses_grade_plus_five_and_a_half() -> None:
    tables = F.tables(
        students_rows=[
            F.student("A", birth_date="2010-03-01"),
            F.student("B", birth_date="2013-06-01"),
        ],
        enrolments=[("A", 2024, "S1", "C1", 7), ("B", 2024, "S1", "C1", 7)],
    )
    population = enrolled_population(tables, as_ofs=[D(2025, 3, 1)])
    features = enrolment_features(tables, population=population).set_index("student_id")
    # A is 15.0 on 2025-03-01; grade 7 expects 12.5: 2.5 years over age.
    assert features.loc["A", "years_over_age"] == pytest.approx(15.0 - 12.5, abs=0.01)
    assert features.loc["B", "years_over_age"] == 0.0  # 11.75 < 12.5: clipped at 0
    assert features.loc["A", "transition_year"] == 1


@pytest.mark.parametrize(("grade", "expected"), [(5, 0), (6, 1), (7, 1), (8, 0), (9, 1)])
def test_transition_years_are_grades_6_7_and_9(grade: int, expected: int) -> None:
    tables = F.tables(enrolments=[("A", 2024, "S1", "C1", grade)])
    population = enrolled_population(tables, as_ofs=[D(2024, 10, 8)])
    assert enrolment_features(tables, population=population)["transition_year"].tolist() == [
        expected
    ]


def test_school_change_from_enrolment_rows_and_transfer_in() -> None:
    tables = F.tables(
        students_rows=[F.student("A"), F.student("B"), F.student("C")],
        enrolments=[
            ("A", 2023, "S1", "C1", 6),
            ("A", 2024, "S2", "C1", 7),  # moved school for grade 7
            ("B", 2023, "S1", "C1", 6),
            ("B", 2024, "S1", "C1", 7),  # stayed (nine-year school)
            ("C", 2024, "S1", "C1", 4),  # first seen in 2024 while 2023 rows exist
        ],
        status_events=[("C", "2024-10-14", "transfer_in", "S1")],
    )
    population = enrolled_population(tables, as_ofs=[D(2024, 11, 1)])
    features = enrolment_features(tables, population=population).set_index("student_id")
    assert features.loc["A", "new_at_school_this_year"] == 1
    assert features.loc["A", "days_since_school_change"] == (D(2024, 11, 1) - D(2024, 8, 1)).days
    assert features.loc["B", "new_at_school_this_year"] == 0
    assert features.loc["B", "days_since_school_change"] == (D(2024, 11, 1) - D(2023, 8, 1)).days
    assert features.loc["C", "new_at_school_this_year"] == 1
    assert features.loc["C", "days_since_school_change"] == 18


def test_grade_7_at_a_junior_school_is_new_even_without_an_earlier_row() -> None:
    tables = F.tables(enrolments=[("A", 2024, "S1", "C1", 7)])  # S1 is a junior school
    population = enrolled_population(tables, as_ofs=[D(2024, 11, 1)])
    assert enrolment_features(tables, population=population)["new_at_school_this_year"][0] == 1


def test_new_at_school_is_unknown_when_the_export_starts_with_the_student_there() -> None:
    tables = F.tables(enrolments=[("A", 2024, "S1", "C1", 4)])
    population = enrolled_population(tables, as_ofs=[D(2024, 11, 1)])
    assert np.isnan(enrolment_features(tables, population=population)["new_at_school_this_year"][0])


def test_empty_population_gives_empty_features() -> None:
    tables = F.tables()
    population = enrolled_population(tables, as_ofs=[D(2030, 1, 1)])
    assert population.empty
    features = enrolment_features(tables, population=population)
    assert features.empty
    assert isinstance(features, pd.DataFrame)
