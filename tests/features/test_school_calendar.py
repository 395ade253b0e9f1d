"""Terms and school days derived from the calendar."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from features.school_calendar import school_days, school_days_between, school_terms, term_kind
from tests.features import frames as F


def test_winter_break_splits_terms_but_national_day_week_does_not() -> None:
    terms = school_terms(F.calendar({"S1": F.YEAR_2024}))
    assert terms["term_start"].tolist() == [F.ts("2024-09-02"), F.ts("2025-02-17")]
    assert terms["term_end"].tolist() == [F.ts("2025-01-17"), F.ts("2025-06-27")]
    assert terms["term_kind"].tolist() == ["september", "spring"]
    assert terms["n_days"].sum() == len(F.YEAR_2024)


def test_a_break_of_exactly_14_days_without_school_starts_a_new_term() -> None:
    before = F.weekdays("2025-04-01", "2025-04-04")
    # 13 calendar days off (5..17 April) stays one term, 14 days off (5..18) splits.
    short_gap = [*before, F.ts("2025-04-18")]
    long_gap = [*before, F.ts("2025-04-19")]
    assert len(school_terms(F.calendar({"S1": short_gap}))) == 1
    assert len(school_terms(F.calendar({"S1": long_gap}))) == 2


def test_days_are_numbered_per_school_and_per_term() -> None:
    days = school_days(F.calendar({"S1": F.YEAR_2024, "S2": F.TERM2}))
    s1 = days[days["school_id"] == "S1"]
    assert s1["day_no"].tolist() == list(range(1, len(F.YEAR_2024) + 1))
    first_spring = s1[s1["date"] == F.ts("2025-02-17")].iloc[0]
    assert first_spring["day_in_term"] == 1
    assert first_spring["term_no"] == 2
    assert first_spring["day_no"] == len(F.TERM1) + 1
    s2 = days[days["school_id"] == "S2"]
    assert s2["day_no"].iloc[0] == 1
    assert (s2["term_kind"] == "spring").all()


def test_term_kinds_cover_university_style_calendars() -> None:
    # Every calendar day a school day; terms from 1 October and 1 February.
    autumn = list(pd.date_range("2024-10-01", "2025-01-15"))
    spring = list(pd.date_range("2025-02-01", "2025-06-15"))
    terms = school_terms(F.calendar({"U1": autumn + spring}))
    assert terms["term_kind"].tolist() == ["september", "spring"]
    assert terms["n_days"].tolist() == [len(autumn), len(spring)]
    assert term_kind(dt.date(2025, 5, 6)) == "other"
    assert term_kind(dt.date(2025, 8, 25)) == "september"


def test_later_school_days_do_not_change_earlier_days() -> None:
    early = school_days(F.calendar({"S1": F.TERM1}))
    full = school_days(F.calendar({"S1": F.YEAR_2024 + F.weekdays("2025-09-01", "2025-09-30")}))
    pd.testing.assert_frame_equal(early, full.iloc[: len(early)])


def test_duplicate_calendar_rows_count_once() -> None:
    cal = F.calendar({"S1": F.TERM1 + F.TERM1[:5]})
    assert len(school_days(cal)) == len(F.TERM1)
    n = school_days_between(cal, school_id="S1", start=dt.date(2024, 9, 2), end=dt.date(2024, 9, 9))
    assert n == 5


def test_empty_calendar_gives_empty_frames() -> None:
    cal = F.calendar({})
    assert school_days(cal).empty
    assert school_terms(cal).empty


def test_terms_of_several_schools_one_term_each_are_told_apart() -> None:
    # Each school's only term is its term 1: the boundaries must follow the schools too.
    cal = F.calendar({"S1": F.TERM1, "S2": F.TERM1, "S3": F.YEAR_2024})
    days = school_days(cal)
    terms = school_terms(cal, days=days)
    assert terms[["school_id", "term_no"]].values.tolist() == [
        ["S1", 1],
        ["S2", 1],
        ["S3", 1],
        ["S3", 2],
    ]
    assert terms["n_days"].tolist() == [len(F.TERM1), len(F.TERM1), len(F.TERM1), len(F.TERM2)]
    assert terms["first_day_no"].tolist() == [1, 1, 1, len(F.TERM1) + 1]
    pd.testing.assert_frame_equal(terms, school_terms(cal))
    expected = days.groupby(["school_id", "term_no"], as_index=False, sort=True).agg(
        term_start=("date", "min"), term_end=("date", "max"), last_day_no=("day_no", "max")
    )
    pd.testing.assert_frame_equal(
        terms[["school_id", "term_no", "term_start", "term_end", "last_day_no"]],
        expected,
        check_dtype=False,
    )
