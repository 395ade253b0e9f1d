"""Class names as schools write them: "六年级(2)班".

An export may carry `enrolments.class_name` (optional, docs/data-contract.md); where it
does not, a class is shown as "N年级(M)班": N the grade level in Chinese numerals, M the
class's order among the classes of that grade in that school and school year, taken from
the class ids in natural order (``...-C2`` before ``...-C10``; ``601`` before ``602``).

Pure: frames in, series out. Pupils' names (`students.name`) are personal data and are
never derived, logged or turned into features here or anywhere else.
"""

from __future__ import annotations

import re

import pandas as pd

GRADE_NUMERALS = ("一", "二", "三", "四", "五", "六", "七", "八", "九")
# Classes are ordered within one school, school year and grade.
CLASS_GROUP = ("school_id", "school_year", "grade_level")

_DIGITS = re.compile(r"(\d+)")


def class_display_name(grade_level: int, order: int) -> str:
    """The class name schools use for the `order`-th class (1-based) of a grade:
    ``class_display_name(6, 2) == "六年级(2)班"``.

    Raises ValueError for a grade level outside 1..9 or an order below 1.
    """
    if not 1 <= grade_level <= len(GRADE_NUMERALS):
        raise ValueError(f"grade_level must be 1..9, got {grade_level}")
    if order < 1:
        raise ValueError(f"a class's order starts at 1, got {order}")
    return f"{GRADE_NUMERALS[grade_level - 1]}年级({order})班"


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders the digit runs of `text` as numbers (``C2`` < ``C10``)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in _DIGITS.split(text)
        if part != ""
    )


def class_orders(enrolments: pd.DataFrame) -> pd.Series:
    """Each row's class order (1-based, int64) among the classes of its school, school
    year and grade level, by `natural_key` of the class ids.

    Parameters
    ----------
    enrolments : pd.DataFrame
        `EnrolmentsModel` rows (uses ``school_id``, ``school_year``, ``grade_level``,
        ``class_id``); pass every row of the school year, not a filtered subset, so that
        a class keeps its number.

    Returns
    -------
    pd.Series
        Aligned with `enrolments`' index.
    """
    keys = enrolments.loc[:, [*CLASS_GROUP, "class_id"]].astype(
        {"school_id": "str", "class_id": "str"}
    )
    classes = keys.drop_duplicates()
    sort_keys = classes["class_id"].map(natural_key)
    classes = classes.assign(_key=sort_keys).sort_values([*CLASS_GROUP, "_key"], kind="stable")
    classes["order"] = classes.groupby(list(CLASS_GROUP), sort=False).cumcount() + 1
    merged = keys.merge(
        classes.drop(columns="_key"), on=[*CLASS_GROUP, "class_id"], how="left", sort=False
    )
    return pd.Series(merged["order"].to_numpy(dtype="int64"), index=enrolments.index)


def display_class_names(enrolments: pd.DataFrame) -> pd.Series:
    """The class name to show for each enrolment row (str): the export's ``class_name``
    where it has one, else "N年级(M)班" from the grade level and `class_orders`.

    Parameters
    ----------
    enrolments : pd.DataFrame
        `EnrolmentsModel` rows; ``class_name`` may be absent or partly missing.

    Returns
    -------
    pd.Series
        Aligned with `enrolments`' index.
    """
    if enrolments.empty:
        return pd.Series([], index=enrolments.index, dtype="str")
    given = (
        enrolments["class_name"].astype("str")
        if "class_name" in enrolments.columns
        else pd.Series(None, index=enrolments.index, dtype="str")
    )
    missing = given.isna() | (given.str.strip() == "")
    if not missing.any():
        return given
    orders = class_orders(enrolments)
    derived = [
        class_display_name(int(grade), int(order))
        for grade, order in zip(
            enrolments.loc[missing, "grade_level"], orders[missing], strict=True
        )
    ]
    out = given.copy()
    out[missing] = derived
    return out


def class_table(enrolments: pd.DataFrame) -> pd.DataFrame:
    """One row per class: ``school_id``, ``school_year``, ``class_id``, ``grade_level``,
    ``class_name`` (what `display_class_names` shows; where the rows of one class
    disagree, the name most of its rows carry, ties to the first in sort order), sorted
    by school, year, grade and class order.

    Parameters
    ----------
    enrolments : pd.DataFrame
        `EnrolmentsModel` rows of whole school years.
    """
    columns = ["school_id", "school_year", "class_id", "grade_level", "class_name"]
    if enrolments.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    rows = enrolments.loc[:, ["school_id", "school_year", "class_id", "grade_level"]].assign(
        class_name=display_class_names(enrolments), order=class_orders(enrolments)
    )
    counted = (
        rows.groupby([*CLASS_GROUP, "order", "class_id", "class_name"], sort=True)
        .size()
        .rename("n")
        .reset_index()
        .sort_values([*CLASS_GROUP, "order", "n"], ascending=[True, True, True, True, False])
        .drop_duplicates(["school_id", "school_year", "class_id"], keep="first")
    )
    return counted.loc[:, columns].reset_index(drop=True)
