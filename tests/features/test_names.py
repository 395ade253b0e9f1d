"""Class names as schools write them, derived where an export has none."""

from __future__ import annotations

import pandas as pd
import pytest

from features.names import (
    class_display_name,
    class_orders,
    class_table,
    display_class_names,
    natural_key,
)
from features.synthetic import generate_county


def test_class_display_name() -> None:
    assert class_display_name(6, 2) == "六年级(2)班"
    assert class_display_name(1, 1) == "一年级(1)班"
    assert class_display_name(9, 12) == "九年级(12)班"
    for grade, order in ((0, 1), (10, 1), (3, 0)):
        with pytest.raises(ValueError):
            class_display_name(grade, order)


def test_natural_key_orders_numbers_as_numbers() -> None:
    ids = ["X-G6-C10", "X-G6-C2", "X-G6-C1", "602", "601", "6班", "10班"]
    assert sorted(ids, key=natural_key) == [
        "6班",
        "10班",
        "601",
        "602",
        "X-G6-C1",
        "X-G6-C2",
        "X-G6-C10",
    ]


def _enrolments(rows: list[tuple[str, int, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["school_id", "school_year", "class_id", "grade_level"]
    ).assign(student_id=[f"P{i}" for i in range(len(rows))])


def test_class_orders_count_within_school_year_and_grade() -> None:
    enrolments = _enrolments(
        [
            ("A", 2025, "A-C10", 6),
            ("A", 2025, "A-C2", 6),
            ("A", 2025, "A-C2", 6),  # two pupils of one class: one order
            ("A", 2025, "A-C1", 5),  # another grade starts again at 1
            ("A", 2024, "A-C10", 6),  # another year too
            ("B", 2025, "A-C1", 6),  # and another school, even with the same class id
        ]
    ).set_index(pd.Index([10, 11, 12, 13, 14, 15]))
    assert class_orders(enrolments).to_dict() == {10: 2, 11: 1, 12: 1, 13: 1, 14: 1, 15: 1}


def test_display_names_use_the_export_s_class_name_where_given() -> None:
    enrolments = _enrolments(
        [("A", 2025, "601", 6), ("A", 2025, "602", 6), ("A", 2025, "701", 7)]
    ).assign(class_name=pd.Series(["六(1)实验班", None, " "], dtype="str"))
    assert display_class_names(enrolments).tolist() == ["六(1)实验班", "六年级(2)班", "七年级(1)班"]
    derived = display_class_names(enrolments.drop(columns="class_name"))
    assert derived.tolist() == ["六年级(1)班", "六年级(2)班", "七年级(1)班"]
    assert display_class_names(enrolments.iloc[:0]).empty


def test_derived_names_match_the_synthetic_county_s_class_names() -> None:
    county = generate_county(n_students=1_500, n_years=2, seed=5)
    written = county.enrolments["class_name"]
    derived = display_class_names(county.enrolments.drop(columns="class_name"))
    assert derived.equals(written)
    assert written.str.fullmatch(r"[一二三四五六七八九]年级\(\d+\)班").all()


def test_class_table_has_one_row_per_class_in_school_order() -> None:
    enrolments = _enrolments(
        [
            ("A", 2025, "A-C10", 6),
            ("A", 2025, "A-C2", 6),
            ("A", 2025, "A-C2", 6),
            ("A", 2025, "A-C2", 6),
            ("A", 2025, "A-C1", 5),
        ]
    ).assign(class_name=pd.Series([None, "六(2)班", "六(2)班", "六年级二班", None], dtype="str"))
    table = class_table(enrolments)
    assert table.to_dict("records") == [
        {
            "school_id": "A",
            "school_year": 2025,
            "class_id": "A-C1",
            "grade_level": 5,
            "class_name": "五年级(1)班",
        },
        {
            "school_id": "A",
            "school_year": 2025,
            "class_id": "A-C2",
            "grade_level": 6,
            "class_name": "六(2)班",  # what most of its rows say
        },
        {
            "school_id": "A",
            "school_year": 2025,
            "class_id": "A-C10",
            "grade_level": 6,
            "class_name": "六年级(2)班",
        },
    ]
    assert class_table(enrolments.iloc[:0]).empty
