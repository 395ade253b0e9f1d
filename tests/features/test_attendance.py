"""Attendance features on hand-made registers: every expected number is counted by hand.

The default calendar (tests/features/frames.py) is school year 2024 at S1: weekdays from
2024-09-02 to 2025-01-17 without the National Day week (1-7 October), then weekdays from
2025-02-17 to 2025-06-27.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.attendance import FEATURES, attendance_features
from features.enrolment import enrolled_population
from tests.features import frames as F

D = dt.date


def features_on(day: dt.date, **table_rows: Any) -> pd.Series:
    """Attendance features of student A on `day`."""
    tables = F.tables(**table_rows)
    population = enrolled_population(tables, as_ofs=[day])
    out = attendance_features(tables, population=population).set_index("student_id")
    return out.loc["A"]


def absent(days: Sequence[str], status: str = "absent_unexcused") -> list[tuple[str, str, str]]:
    return [("A", d, status) for d in days]


def test_a_run_across_a_weekend_counts_school_days_only() -> None:
    # Thursday, Friday, Monday: three school days in a row.
    row = features_on(D(2024, 9, 10), attendance=absent(["2024-09-05", "2024-09-06", "2024-09-09"]))
    assert row["unexcused_run"] == 3
    assert row["escalation_level"] == 3
    assert row["unexcused_7d"] == 3
    assert row["active_days_90d"] == 6  # 2, 3, 4, 5, 6, 9 September


def test_a_run_across_the_national_day_holiday_is_one_run() -> None:
    row = features_on(D(2024, 10, 9), attendance=absent(["2024-09-30", "2024-10-08"]))
    assert row["unexcused_run"] == 2
    assert row["escalation_level"] == 2


def test_a_present_day_or_a_late_day_ends_the_run() -> None:
    rows = absent(["2024-09-05", "2024-09-06"]) + [("A", "2024-09-09", "late")]
    rows += absent(["2024-09-10"])
    row = features_on(D(2024, 9, 11), attendance=rows)
    assert row["unexcused_run"] == 1
    assert row["escalation_level"] == 1
    assert row["unexcused_longest_run_term"] == 2
    assert row["late_30d"] == 1
    # A day without a row is present: the run is over on the 12th.
    assert features_on(D(2024, 9, 12), attendance=rows)["unexcused_run"] == 0


def test_the_escalation_level_stops_at_three() -> None:
    days = ["2024-09-09", "2024-09-10", "2024-09-11", "2024-09-12", "2024-09-13"]
    row = features_on(D(2024, 9, 14), attendance=absent(days))
    assert row["unexcused_run"] == 5
    assert row["escalation_level"] == 3


def test_windows_count_the_last_n_school_days_before_as_of() -> None:
    # 20 school days before 30 September (2..27 September).
    rows = absent(["2024-09-02", "2024-09-16", "2024-09-27"])
    rows += absent(["2024-09-19", "2024-09-20"], "leave_sick")
    rows += absent(["2024-09-23"], "leave_personal")
    row = features_on(D(2024, 9, 30), attendance=rows)
    assert row["active_days_90d"] == 20
    assert row["unexcused_7d"] == 1  # 19..27 September
    assert row["leave_7d"] == 3
    assert row["unexcused_14d"] == 2  # 10..27 September
    assert row["unexcused_30d"] == 3
    assert row["unexcused_rate_7d"] == pytest.approx(1 / 7)
    assert row["unexcused_rate_30d"] == pytest.approx(3 / 20)  # only 20 school days so far
    assert row["leave_rate_14d"] == pytest.approx(3 / 14)


def test_records_on_or_after_as_of_are_not_seen() -> None:
    row = features_on(D(2024, 9, 9), attendance=absent(["2024-09-09", "2024-09-10"]))
    assert row["unexcused_run"] == 0
    assert row["unexcused_90d"] == 0


def test_days_between_dropout_and_return_are_not_school_days_of_the_student() -> None:
    # Out from 4 to 19 November (12 school days), back on the 20th.
    events = [("A", "2024-11-04", "dropout", "S1"), ("A", "2024-11-20", "return", "S1")]
    rows = absent(["2024-11-01", "2024-11-20"])
    rows += absent(["2024-11-05", "2024-11-06"])  # recorded while out: ignored
    row = features_on(D(2024, 11, 21), attendance=rows, status_events=events)
    # The 1st and the 20th are consecutive school days of the student: one run of two.
    assert row["unexcused_run"] == 2
    assert row["unexcused_7d"] == 2
    assert row["unexcused_30d"] == 2


def test_rates_divide_by_days_enrolled_and_active_in_the_window() -> None:
    # Suspended from 14 October: a window of 30 school days reaches back past the gap.
    events = [("A", "2024-10-14", "suspend", "S1"), ("A", "2024-11-25", "resume", "S1")]
    rows = absent(["2024-11-25", "2024-11-26"])
    row = features_on(D(2024, 11, 27), attendance=rows, status_events=events)
    # Student days: 2 Sept .. 11 Oct = 25, then 25 and 26 November = 2; K = 27.
    assert row["active_days_90d"] == 27
    assert row["unexcused_rate_30d"] == pytest.approx(2 / 27)
    assert row["unexcused_rate_7d"] == pytest.approx(2 / 7)


def test_a_new_student_has_counts_of_zero_and_unknown_rates() -> None:
    row = features_on(D(2024, 9, 2))
    assert row["active_days_90d"] == 0
    assert row["unexcused_30d"] == 0
    assert np.isnan(row["unexcused_rate_30d"])
    assert np.isnan(row["unexcused_trend_30d"])


def test_trend_compares_the_last_30_school_days_with_the_30_before() -> None:
    # School days before 11 November: 21 in September, 18 in October, 6 in November.
    rows = absent(["2024-09-03", "2024-09-04", "2024-09-05", "2024-11-08"])
    row = features_on(D(2024, 11, 11), attendance=rows)
    assert row["active_days_90d"] == 45
    # Last 30: 1 of 30; the 15 before: 3 of 15.
    assert row["unexcused_trend_30d"] == pytest.approx(1 / 30 - 3 / 15)


def test_term_rate_and_change_against_the_same_point_last_term() -> None:
    # Spring term so far before 3 March: 17..28 February = 10 school days, 1 absence.
    # First 10 school days of the September term: 2..13 September, 4 absences.
    rows = absent(["2024-09-03", "2024-09-05", "2024-09-10", "2024-09-13", "2024-09-20"])
    rows += absent(["2025-02-20"])
    row = features_on(D(2025, 3, 3), attendance=rows)
    assert row["unexcused_rate_term"] == pytest.approx(1 / 10)
    assert row["unexcused_rate_term_change"] == pytest.approx(1 / 10 - 4 / 10)
    # The longest run is per term: nothing carries over from September.
    assert row["unexcused_longest_run_term"] == 1


def test_no_previous_term_gives_an_unknown_change() -> None:
    row = features_on(D(2024, 10, 9), attendance=absent(["2024-09-03"]))
    assert row["unexcused_rate_term"] == pytest.approx(1 / 22)  # 21 in Sept, 8 Oct
    assert np.isnan(row["unexcused_rate_term_change"])


def test_days_missed_after_the_spring_festival_and_the_september_start() -> None:
    rows = absent(["2024-09-02", "2024-09-13"])  # day 1 and day 10 of the September term
    rows += absent(["2024-09-16"])  # day 11: not counted
    rows += absent(["2025-02-17"], "leave_personal") + absent(["2025-02-19"])
    before_spring = features_on(D(2025, 1, 6), attendance=rows)
    assert np.isnan(before_spring["missed_after_spring_start"])
    assert before_spring["missed_after_september_start"] == 2
    during = features_on(D(2025, 2, 19), attendance=rows)  # two school days in
    assert during["missed_after_spring_start"] == 1
    after = features_on(D(2025, 3, 10), attendance=rows)
    assert after["missed_after_spring_start"] == 2
    assert after["missed_after_september_start"] == 2


def test_a_student_who_arrives_after_the_first_ten_days_has_no_term_start_value() -> None:
    enrolments = [("A", 2024, "S1", "C1", 7, "2024-10-08", "2025-07-31")]
    row = features_on(D(2024, 11, 4), enrolments=enrolments)
    assert np.isnan(row["missed_after_september_start"])


def test_present_rows_and_duplicate_rows_change_nothing() -> None:
    plain = features_on(D(2024, 9, 12), attendance=absent(["2024-09-10", "2024-09-11"]))
    noisy_rows = absent(["2024-09-10", "2024-09-11", "2024-09-11"])
    noisy_rows += absent(["2024-09-09", "2024-09-11"], "present") + [("A", "2024-09-10", "late")]
    noisy = features_on(D(2024, 9, 12), attendance=noisy_rows)
    pd.testing.assert_series_equal(plain, noisy)


def test_an_absence_on_a_day_that_is_not_a_school_day_is_ignored() -> None:
    row = features_on(D(2024, 9, 10), attendance=absent(["2024-09-07", "2024-09-09"]))
    assert row["unexcused_run"] == 1
    assert row["unexcused_30d"] == 1


def test_a_school_change_continues_the_student_day_count() -> None:
    enrolments = [
        ("A", 2024, "S1", "C1", 7, "2024-08-01", "2024-09-06"),
        ("A", 2024, "S2", "C2", 7, "2024-09-07", "2025-07-31"),
    ]
    calendar = F.calendar({"S1": F.YEAR_2024, "S2": F.weekdays("2024-09-09", "2024-12-20")})
    rows = absent(["2024-09-06", "2024-09-09"])
    row = features_on(
        D(2024, 9, 10), enrolments=enrolments, calendar_frame=calendar, attendance=rows
    )
    assert row["unexcused_run"] == 2
    assert row["active_days_90d"] == 6


def test_output_has_one_row_per_pair_in_order_with_catalog_dtypes() -> None:
    tables = F.tables(students_rows=[F.student("B"), F.student("A")])
    population = enrolled_population(tables, as_ofs=[D(2024, 9, 10), D(2024, 9, 3)])
    out = attendance_features(tables, population=population)
    assert out[["student_id", "as_of"]].equals(population[["student_id", "as_of"]])
    assert list(out.columns) == ["student_id", "as_of", *FEATURES]
    assert out["unexcused_run"].dtype == "int64"
    assert out["unexcused_rate_30d"].dtype == "float64"


def test_empty_register_and_empty_population() -> None:
    tables = F.tables()
    empty = enrolled_population(tables, as_ofs=[D(2031, 1, 1)])
    assert attendance_features(tables, population=empty).empty
    row = features_on(D(2024, 12, 2))
    assert row["unexcused_90d"] == 0
    assert row["unexcused_run"] == 0
