"""Family features: hardship flags, left-behind status, guardian, boarding, sex.

The `students` table holds these attributes as known at export, without dates, so every
as_of sees the same values. Categories become 0/1 indicator columns against a base
category (``left_behind == "none"``, ``guardian == "parents"``, ``sex == "M"``).
``ethnic_minority`` is for fairness audits only and is never read here.

A missing flag (a student in the population but not in `students`, or a null cell) reads
as 0 and is counted in a warning; the validator normally rules both out.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features.tables import GUARDIANS, HARDSHIP_FLAGS, LEFT_BEHIND, RawTables

logger = logging.getLogger(__name__)

LEFT_BEHIND_COLUMNS = tuple(f"left_behind_{v}" for v in LEFT_BEHIND if v != "none")
GUARDIAN_COLUMNS = tuple(f"guardian_{v}" for v in GUARDIANS if v != "parents")
OTHER_FLAGS = ("boarding", "migrant_child")
FEATURES = (
    *HARDSHIP_FLAGS,
    "hardship_count",
    *LEFT_BEHIND_COLUMNS,
    *GUARDIAN_COLUMNS,
    *OTHER_FLAGS,
    "sex_female",
)


def _flag(values: pd.Series) -> tuple[np.ndarray, int]:
    """0/1 int64 from a bool-like column, and how many cells were missing."""
    missing = values.isna().to_numpy()
    if pd.api.types.is_bool_dtype(values.dtype) and not missing.any():
        return values.to_numpy(dtype=bool).astype(np.int64), 0
    text = values.astype("string").str.strip().str.lower()
    truthy = text.isin(["true", "1", "1.0"]).fillna(False)
    return truthy.to_numpy(dtype=bool).astype(np.int64), int(missing.sum())


def _validated_rows(keys: pd.DataFrame, students: pd.DataFrame) -> pd.DataFrame | None:
    """The features by position look-up, when every student of `keys` has a `students`
    row with every column filled and the flags boolean (a validated export); None
    otherwise (the general path below reads text flags and counts missing ones).

    The same values as the general path's two merges, at a fraction of their cost for
    the one pupil of `POST /v1/score`."""
    flags = (*HARDSHIP_FLAGS, *OTHER_FLAGS)
    codes = ("left_behind", "guardian", "sex")
    if any(c not in students.columns for c in (*flags, *codes)):
        return None
    if any(not pd.api.types.is_bool_dtype(students[c].dtype) for c in flags):
        return None
    if students.loc[:, [*flags, *codes]].isna().to_numpy().any():
        return None
    position = pd.Index(students["student_id"]).get_indexer(keys["student_id"])
    if (position < 0).any():
        return None
    columns: dict[str, np.ndarray] = {
        c: students[c].to_numpy(dtype=bool)[position].astype(np.int64) for c in flags
    }
    columns["hardship_count"] = np.asarray(
        np.sum([columns[c] for c in HARDSHIP_FLAGS], axis=0, dtype=np.int64)
    )
    left = students["left_behind"].to_numpy(dtype=object)[position]
    for value, col in zip(
        [v for v in LEFT_BEHIND if v != "none"], LEFT_BEHIND_COLUMNS, strict=True
    ):
        columns[col] = (left == value).astype(np.int64)
    guardian = students["guardian"].to_numpy(dtype=object)[position]
    for value, col in zip([v for v in GUARDIANS if v != "parents"], GUARDIAN_COLUMNS, strict=True):
        columns[col] = (guardian == value).astype(np.int64)
    sex = students["sex"].to_numpy(dtype=object)[position]
    columns["sex_female"] = (sex == "F").astype(np.int64)
    out = keys.assign(**{name: columns[name] for name in FEATURES})
    return out.loc[:, ["student_id", "as_of", *FEATURES]]


def family_features(tables: RawTables, *, population: pd.DataFrame) -> pd.DataFrame:
    """Family features for each (student, as_of) of `population`.

    Parameters
    ----------
    tables : RawTables
        Uses `students` (``student_id``, the `HARDSHIP_FLAGS`, ``left_behind``,
        ``guardian``, ``boarding``, ``migrant_child``, ``sex``).
    population : pd.DataFrame
        Rows with ``student_id`` (str) and ``as_of`` (datetime64).

    Returns
    -------
    pd.DataFrame
        ``student_id``, ``as_of`` and int64 columns, in population order: each hardship
        flag (0/1), ``hardship_count`` (0-6), ``left_behind_one_parent_away``,
        ``left_behind_both_parents_away``, ``guardian_grandparents``,
        ``guardian_relatives``, ``guardian_other``, ``boarding``, ``migrant_child``,
        ``sex_female``.
    """
    keys = pd.DataFrame(
        {
            "student_id": population["student_id"].astype("str").to_numpy(),
            "as_of": pd.to_datetime(population["as_of"]).astype("datetime64[ns]").to_numpy(),
        }
    )
    wanted = ["student_id", *HARDSHIP_FLAGS, *OTHER_FLAGS, "left_behind", "guardian", "sex"]
    students = tables.students.loc[:, [c for c in wanted if c in tables.students.columns]].copy()
    students["student_id"] = students["student_id"].astype("str")
    students = students.drop_duplicates("student_id")
    fast = _validated_rows(keys, students)
    if fast is not None:
        return fast
    ids = pd.DataFrame({"student_id": keys["student_id"].drop_duplicates().to_numpy()})
    rows = ids.merge(students, on="student_id", how="left", validate="1:1")
    out = ids.copy()
    missing = 0
    for col in (*HARDSHIP_FLAGS, *OTHER_FLAGS):
        source = rows[col] if col in rows.columns else pd.Series(np.nan, index=rows.index)
        values, n_missing = _flag(source)
        out[col] = values
        missing += n_missing
    out["hardship_count"] = out[list(HARDSHIP_FLAGS)].sum(axis=1).astype("int64")
    left = rows.get("left_behind", pd.Series(np.nan, index=rows.index)).astype("object")
    for value, col in zip(
        [v for v in LEFT_BEHIND if v != "none"], LEFT_BEHIND_COLUMNS, strict=True
    ):
        out[col] = (left == value).to_numpy().astype(np.int64)
    guardian = rows.get("guardian", pd.Series(np.nan, index=rows.index)).astype("object")
    for value, col in zip([v for v in GUARDIANS if v != "parents"], GUARDIAN_COLUMNS, strict=True):
        out[col] = (guardian == value).to_numpy().astype(np.int64)
    sex = rows.get("sex", pd.Series(np.nan, index=rows.index)).astype("object")
    out["sex_female"] = (sex == "F").to_numpy().astype(np.int64)
    if missing:
        logger.warning("%d missing family flags read as 0", missing)
    merged = keys.merge(out, on="student_id", how="left", validate="m:1")
    return merged.loc[:, ["student_id", "as_of", *FEATURES]].astype(
        dict.fromkeys(FEATURES, "int64")
    )
