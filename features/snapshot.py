"""Snapshots: one feature row per student enrolled and active on an as_of date.

`build_snapshot` is what weekly scoring calls, `build_snapshots` what training calls for
many as_of dates at once; both give the same rows (`build_snapshots` is one pass over the
tables, not one per date). A row uses only records known strictly before its as_of:
attendance, exam results and status events dated before it, and school days before it.

Columns: the `ID_COLUMNS` (``student_id`` str, ``as_of`` datetime64[ns], ``school_id``,
``class_id`` str), then the feature columns in catalog order (`features.catalog`), each
int64 or float64 as the catalog says, NaN where a value is unknown. ``extra_<attribute>``
float columns follow when the export has a `student_attributes` table with rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.academics import academic_features
from features.attendance import attendance_features
from features.catalog import NEVER_FEATURES, extra_column, feature_columns, spec
from features.enrolment import (
    active_spells,
    enrolled_population,
    enrolment_features,
    enrolment_rows,
    status_events,
)
from features.family import family_features
from features.tables import RawTables

logger = logging.getLogger(__name__)

ID_COLUMNS = ("student_id", "as_of", "school_id", "class_id")


def extra_features(tables: RawTables, *, population: pd.DataFrame) -> pd.DataFrame:
    """``extra_<attribute>`` float64 columns from the optional `student_attributes` table.

    Parameters
    ----------
    tables : RawTables
        Uses `student_attributes` (``student_id``, ``attribute``, ``value``).
    population : pd.DataFrame
        Rows with ``student_id`` (str).

    Returns
    -------
    pd.DataFrame
        One column per attribute, aligned with `population` (NaN for a student without
        that attribute; the mean when an attribute repeats); no columns when the table is
        empty. Attributes are not dated, so every as_of sees the same value.
    """
    attrs = tables.student_attributes
    index = pd.RangeIndex(len(population))
    if attrs is None or attrs.empty:
        return pd.DataFrame(index=index)
    rows = pd.DataFrame(
        {
            "student_id": attrs["student_id"].astype("str"),
            "column": attrs["attribute"].astype("str").map(extra_column),
            "value": pd.to_numeric(attrs["value"], errors="coerce").astype("float64"),
        }
    )
    rows = rows[~rows["column"].isin([extra_column(n) for n in NEVER_FEATURES])]
    wide = rows.pivot_table(index="student_id", columns="column", values="value", aggfunc="mean")
    wide.columns = [str(c) for c in wide.columns]
    ids = population["student_id"].astype("str").to_numpy()
    out = wide.reindex(ids)
    out.index = index
    return out.astype("float64")


def _aligned(part: pd.DataFrame, population: pd.DataFrame, name: str) -> pd.DataFrame:
    """`part`'s feature columns, after checking it has the population's keys in order."""
    same = np.array_equal(
        part["student_id"].astype("str").to_numpy(), population["student_id"].to_numpy()
    ) and np.array_equal(
        part["as_of"].to_numpy(dtype="datetime64[ns]"),
        population["as_of"].to_numpy(dtype="datetime64[ns]"),
    )
    if not same:
        raise RuntimeError(f"{name} features are not aligned with the population")
    return part.drop(columns=["student_id", "as_of"]).reset_index(drop=True)


def build_snapshots(tables: RawTables, *, as_ofs: Sequence[dt.date]) -> pd.DataFrame:
    """Snapshot rows for every as_of in `as_ofs`, computed in one pass.

    Parameters
    ----------
    tables : RawTables
        A validated export (`features.sources`); every table is read.
    as_ofs : sequence of datetime.date
        The as_of dates (duplicates ignored).

    Returns
    -------
    pd.DataFrame
        `ID_COLUMNS` then `feature_columns` order, sorted by ``as_of`` then
        ``student_id``; equal to concatenating `build_snapshot` over the sorted dates.
    """
    # The enrolment rows and status events feed four of the steps: prepare them once.
    enrolments = enrolment_rows(tables.enrolments)
    events = status_events(tables, enrolments)
    population = enrolled_population(tables, as_ofs=as_ofs, enrolments=enrolments, events=events)
    spells = active_spells(tables, enrolments=enrolments, events=events)
    parts = {
        "attendance": attendance_features(tables, population=population, spells=spells),
        "academic": academic_features(tables, population=population, enrolments=enrolments),
        "family": family_features(tables, population=population),
        "enrolment": enrolment_features(tables, population=population, enrolments=enrolments),
    }
    frames = [
        population.loc[:, [*ID_COLUMNS, "grade_level"]].reset_index(drop=True),
        *(_aligned(part, population, name) for name, part in parts.items()),
        extra_features(tables, population=population),
    ]
    snapshot = pd.concat(frames, axis=1)
    for never in NEVER_FEATURES:
        if never in snapshot.columns:
            raise RuntimeError(f"{never} must never be a feature column")
    features = feature_columns(snapshot)
    snapshot = snapshot.loc[:, [*ID_COLUMNS, *features]]
    dtypes = {
        "student_id": "str",
        "as_of": "datetime64[ns]",
        "school_id": "str",
        "class_id": "str",
        **{name: spec(name).dtype for name in features},
    }
    # Cast only what is not yet of its dtype (most columns already are).
    casts = {name: dtype for name, dtype in dtypes.items() if snapshot[name].dtype != dtype}
    snapshot = snapshot.astype(casts) if casts else snapshot
    if len(snapshot) > 1:  # one row (POST /v1/score) is unique and sorted already
        if snapshot.duplicated(["student_id", "as_of"]).any():
            raise RuntimeError("snapshot has more than one row for a (student_id, as_of)")
        snapshot = snapshot.sort_values(["as_of", "student_id"], kind="stable")
    snapshot = snapshot.reset_index(drop=True)
    dates = sorted({pd.Timestamp(d).date() for d in as_ofs})
    if dates:
        logger.info(
            "built %d snapshot rows with %d features for %d as_of dates, %s .. %s",
            len(snapshot),
            len(features),
            len(dates),
            dates[0],
            dates[-1],
        )
    return snapshot


def build_snapshot(tables: RawTables, *, as_of: dt.date) -> pd.DataFrame:
    """One row per student enrolled and active on `as_of`, sorted by ``student_id``.

    Uses only records known strictly before `as_of`; see `build_snapshots` for the columns.
    """
    return build_snapshots(tables, as_ofs=[as_of])
