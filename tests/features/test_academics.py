"""Exam features on hand-made grades: shares, changes, failures, rank, missed papers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.academics import academic_features
from features.enrolment import enrolled_population
from tests.features import frames as F

D = dt.date
NAN = float("nan")


def exam(
    student: str,
    date: str,
    scores: dict[str, float],
    *,
    exam_kind: str = "midterm",
    school_year: int = 2024,
    term: int = 1,
    max_score: float = 100.0,
) -> list[tuple[Any, ...]]:
    return [
        (student, school_year, term, exam_kind, subject, score, max_score, date)
        for subject, score in scores.items()
    ]


def academics_on(day: dt.date, grades: list[tuple[Any, ...]], students: int = 1) -> pd.DataFrame:
    ids = ["A", "B", "C", "D", "E"][:students]
    tables = F.tables(students_rows=[F.student(s) for s in ids], grades=grades)
    population = enrolled_population(tables, as_ofs=[day])
    return academic_features(tables, population=population).set_index("student_id")


def test_latest_share_change_and_failed_subjects() -> None:
    grades = exam("A", "2024-10-20", {"chinese": 90, "math": 80, "english": 70})
    grades += exam("A", "2024-11-15", {"chinese": 70, "math": 50, "english": 30}, exam_kind="final")
    row = academics_on(D(2024, 11, 18), grades).loc["A"]
    assert row["latest_score_share"] == pytest.approx(0.5)
    assert row["score_share_change"] == pytest.approx(0.5 - 0.8)
    assert row["subjects_failed_latest"] == 2
    assert row["year_mean_score_share"] == pytest.approx((0.8 + 0.5) / 2)


def test_a_result_is_seen_only_after_its_date() -> None:
    grades = exam("A", "2024-10-20", {"math": 90}) + exam("A", "2024-11-15", {"math": 40})
    row = academics_on(D(2024, 11, 15), grades).loc["A"]
    assert row["latest_score_share"] == pytest.approx(0.9)
    assert np.isnan(row["score_share_change"])


def test_shares_use_each_subjects_maximum_and_skip_missed_papers() -> None:
    grades = exam("A", "2024-10-20", {"chinese": 120}, max_score=150.0)
    grades += exam("A", "2024-10-20", {"math": 45, "english": NAN})
    row = academics_on(D(2024, 10, 21), grades).loc["A"]
    assert row["latest_score_share"] == pytest.approx((0.8 + 0.45) / 2)
    assert row["subjects_failed_latest"] == 1
    assert row["exams_missed_term"] == 1


def test_no_exam_yet_gives_unknown_shares_and_zero_missed() -> None:
    row = academics_on(D(2024, 9, 9), []).loc["A"]
    assert np.isnan(row["latest_score_share"])
    assert np.isnan(row["subjects_failed_latest"])
    assert np.isnan(row["score_rank_pct"])
    assert row["exams_missed_term"] == 0
    assert row["exams_missed_prev_term"] == 0


def test_rank_percentile_within_school_grade_and_the_same_exam() -> None:
    grades = []
    for student, score in zip("ABCDE", [40, 60, 60, 80, 100], strict=True):
        grades += exam(student, "2024-11-15", {"math": score})
    out = academics_on(D(2024, 11, 18), grades, students=5)
    assert out["score_rank_pct"].tolist() == pytest.approx([0.0, 0.25, 0.25, 0.75, 1.0])


def test_rank_of_a_student_alone_in_an_exam_is_unknown() -> None:
    grades = exam("A", "2024-11-15", {"math": 70}) + exam("B", "2024-11-16", {"math": 90})
    out = academics_on(D(2024, 11, 18), grades, students=2)
    assert out["score_rank_pct"].isna().all()


def test_missed_papers_in_the_current_and_previous_term() -> None:
    grades = exam("A", "2024-11-15", {"math": NAN, "chinese": NAN, "english": 70}, term=1)
    grades += exam("A", "2025-04-20", {"math": NAN, "chinese": 80}, term=2)
    in_term_one = academics_on(D(2024, 12, 2), grades).loc["A"]
    assert (in_term_one["exams_missed_term"], in_term_one["exams_missed_prev_term"]) == (2, 0)
    in_term_two = academics_on(D(2025, 5, 6), grades).loc["A"]
    assert (in_term_two["exams_missed_term"], in_term_two["exams_missed_prev_term"]) == (1, 2)
    # January still belongs to term 1.
    january = academics_on(D(2025, 1, 13), grades).loc["A"]
    assert january["exams_missed_term"] == 2


def test_year_mean_leaves_out_exams_older_than_365_days() -> None:
    grades = exam("A", "2023-11-10", {"math": 20}, school_year=2023)
    grades += exam("A", "2024-11-15", {"math": 80})
    row = academics_on(D(2024, 11, 18), grades).loc["A"]
    assert row["year_mean_score_share"] == pytest.approx(0.8)
