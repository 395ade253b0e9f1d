"""Family features: hardship flags, left-behind and guardian indicators, sex."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from features.enrolment import enrolled_population
from features.family import FEATURES, family_features
from tests.features import frames as F


def family_of(*students: dict[str, object]) -> pd.DataFrame:
    tables = F.tables(students_rows=list(students))
    population = enrolled_population(tables, as_ofs=[dt.date(2024, 10, 8)])
    return family_features(tables, population=population).set_index("student_id")


def test_flags_and_hardship_count() -> None:
    out = family_of(
        F.student("A", poverty_registered=True, dibao=True, single_parent=True),
        F.student("B"),
    )
    assert out.loc["A", "poverty_registered"] == 1
    assert out.loc["A", "dibao"] == 1
    assert out.loc["A", "tekun"] == 0
    assert out.loc["A", "hardship_count"] == 3
    assert out.loc["B", "hardship_count"] == 0


def test_left_behind_guardian_boarding_migrant_and_sex_become_indicators() -> None:
    out = family_of(
        F.student(
            "A",
            left_behind="both_parents_away",
            guardian="grandparents",
            boarding=True,
            sex="M",
        ),
        F.student("B", left_behind="one_parent_away", guardian="relatives", migrant_child=True),
    )
    a, b = out.loc["A"], out.loc["B"]
    assert (a["left_behind_both_parents_away"], a["left_behind_one_parent_away"]) == (1, 0)
    assert (b["left_behind_both_parents_away"], b["left_behind_one_parent_away"]) == (0, 1)
    assert (a["guardian_grandparents"], b["guardian_relatives"], b["guardian_other"]) == (1, 1, 0)
    assert (a["boarding"], b["boarding"]) == (1, 0)
    assert (a["migrant_child"], b["migrant_child"]) == (0, 1)
    assert (a["sex_female"], b["sex_female"]) == (0, 1)


def test_every_column_is_int64_and_ethnic_minority_is_never_read() -> None:
    out = family_of(F.student("A", ethnic_minority=True), F.student("B", ethnic_minority=False))
    assert list(out.columns) == ["as_of", *FEATURES]
    assert (out[list(FEATURES)].dtypes == "int64").all()
    assert not any("ethnic" in c for c in out.columns)


def test_text_booleans_from_a_csv_are_read() -> None:
    out = family_of(F.student("A", orphan="true", disability="1"), F.student("B", orphan="false"))
    assert (out.loc["A", "orphan"], out.loc["A", "disability"], out.loc["B", "orphan"]) == (1, 1, 0)
