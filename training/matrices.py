"""Snapshots + labels -> the rows, matrices and fairness groups of one split."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from features.snapshot import build_snapshots
from features.tables import RawTables, default_enrolment_end
from training.fairness import DEFAULT_GROUPS
from training.labels import make_labels
from training.splits import CohortSplit, Split

logger = logging.getLogger(__name__)


def observed_until(tables: RawTables) -> date:
    """The last day the export can tell about: its last school day."""
    last: date = pd.Timestamp(tables.calendar["date"].max()).date()
    return last


def school_days(tables: RawTables) -> list[date]:
    """Every date that is a school day of at least one school."""
    days = pd.to_datetime(tables.calendar["date"]).drop_duplicates().sort_values()
    return [d.date() for d in days]


def enrolment_end(tables: RawTables, snapshot: pd.DataFrame) -> pd.Series:
    """End date of the enrolment row each snapshot row sits in."""
    enr = tables.enrolments.copy()
    if "end_date" not in enr.columns:
        enr["end_date"] = pd.NaT
    fallback = enr["school_year"].map(default_enrolment_end)
    enr["end_date"] = pd.to_datetime(enr["end_date"]).fillna(fallback)
    keys = ["student_id", "school_id", "class_id"]
    ends = enr.groupby(keys, as_index=False)["end_date"].max()
    merged = snapshot[keys].merge(ends, on=keys, how="left")
    return pd.Series(merged["end_date"].to_numpy(), index=snapshot.index)


def enrolment_start(tables: RawTables, snapshot: pd.DataFrame) -> pd.Series:
    """Start date of the enrolment row each snapshot row sits in (datetime64[ns]): the
    latest row of its (student, school, class) that starts on or before the row's as_of;
    NaT when the export gives no start date."""
    enr = tables.enrolments
    keys = ["student_id", "school_id", "class_id"]
    rows = snapshot.loc[:, [*keys, "as_of"]].reset_index(drop=True)
    rows["row"] = np.arange(len(rows))
    if "start_date" not in enr.columns:
        return pd.Series(pd.NaT, index=snapshot.index, dtype="datetime64[ns]")
    starts = enr.loc[:, keys].astype("str")
    starts["start"] = pd.to_datetime(enr["start_date"]).astype("datetime64[ns]")
    merged = rows.astype(dict.fromkeys(keys, "str")).merge(starts, on=keys, how="left")
    merged = merged.loc[merged["start"].isna() | (merged["start"] <= merged["as_of"])]
    latest = merged.groupby("row")["start"].max().reindex(range(len(rows)))
    return pd.Series(latest.to_numpy(dtype="datetime64[ns]"), index=snapshot.index)


def label_snapshot(
    tables: RawTables,
    snapshot: pd.DataFrame,
    *,
    horizon: timedelta,
    observed_until: date,
    horizon_to_enrolment_end: bool = False,
) -> pd.DataFrame:
    """Snapshot rows with `label` attached; censored and unobservable rows dropped.

    The one labelling step of the in-memory rows (`labelled_snapshots`) and of each Dask
    partition's (`training.distributed.labelled_partition`). `tables` holds every row of
    the snapshot's students; `observed_until` is the last day the whole export can tell
    about (a partition's own calendar may end earlier).
    """
    population = snapshot.loc[:, ["student_id", "as_of"]].copy()
    if horizon_to_enrolment_end:
        end = enrolment_end(tables, snapshot) + pd.Timedelta(days=1)
        population["label_until"] = np.minimum(
            (snapshot["as_of"] + pd.Timedelta(horizon)).to_numpy(), end.to_numpy()
        )
    labels = make_labels(
        tables.status_events,
        population,
        horizon=horizon,
        observed_until=observed_until,
    )
    labels = labels.loc[~labels["censored"].astype(bool), ["student_id", "as_of", "label"]]
    frame = snapshot.merge(labels, on=["student_id", "as_of"], how="inner")
    frame["label"] = frame["label"].astype(np.int64)
    return frame


def labelled_snapshots(
    tables: RawTables,
    *,
    as_ofs: Sequence[date],
    horizon: timedelta,
    horizon_to_enrolment_end: bool = False,
) -> pd.DataFrame:
    """Snapshots for every as_of with `label` attached; censored and unobservable rows dropped.

    Returns the snapshot columns plus `label` (0/1).
    """
    frame = label_snapshot(
        tables,
        build_snapshots(tables, as_ofs=list(as_ofs)),
        horizon=horizon,
        observed_until=observed_until(tables),
        horizon_to_enrolment_end=horizon_to_enrolment_end,
    )
    logger.info(
        "%d labelled rows over %d as_of dates, %d positives",
        len(frame),
        frame["as_of"].nunique(),
        int(frame["label"].sum()),
    )
    return frame


@dataclass(frozen=True)
class SplitFrames:
    """The labelled rows of one split, by part."""

    train: pd.DataFrame
    calibration: pd.DataFrame
    test: pd.DataFrame


def split_frames(
    frame: pd.DataFrame,
    split: Split | CohortSplit,
    *,
    enrolment_starts: pd.Series | None = None,
) -> SplitFrames:
    """Cut labelled rows into the split's train, calibration and test parts.

    A `CohortSplit` also needs `enrolment_starts` (aligned to `frame`, see
    `enrolment_start`); see `cohort_split_frames`.
    """
    if isinstance(split, CohortSplit):
        if enrolment_starts is None:
            raise ValueError("a cohort split needs the enrolment start of every row")
        return cohort_split_frames(frame, split, enrolment_starts=enrolment_starts)
    as_of = frame["as_of"].dt.date

    def part(days: Sequence[date]) -> pd.DataFrame:
        return frame.loc[as_of.isin(set(days))].reset_index(drop=True)

    return SplitFrames(
        train=part(split.train_as_ofs),
        calibration=part(split.calibration_as_ofs),
        test=part(split.test_as_ofs),
    )


def cohort_split_frames(
    frame: pd.DataFrame, split: CohortSplit, *, enrolment_starts: pd.Series
) -> SplitFrames:
    """Rows of enrolments starting on or after ``split.cohort_from`` at the test dates
    test; rows of earlier enrolments train, except those of a held-out
    ``calibration_share`` of their students (drawn with ``split.seed``), which calibrate.
    Rows whose enrolment start is unknown are left out."""
    start = pd.to_datetime(enrolment_starts).to_numpy(dtype="datetime64[ns]")
    known = ~np.isnat(start)
    cut = np.datetime64(split.cohort_from, "ns")
    as_of = frame["as_of"].dt.date
    later = known & (start >= cut)
    earlier = known & (start < cut)
    test = later & as_of.isin(set(split.test_as_ofs)).to_numpy()
    ids = np.sort(frame.loc[earlier, "student_id"].astype("str").unique())
    rng = np.random.default_rng(split.seed)
    n_held = int(round(len(ids) * split.calibration_share))
    held = set(rng.choice(ids, size=n_held, replace=False)) if n_held else set()
    in_held = frame["student_id"].astype("str").isin(held).to_numpy()
    train = earlier & ~in_held & as_of.isin(set(split.train_as_ofs)).to_numpy()
    calibration = earlier & in_held & as_of.isin(set(split.calibration_as_ofs)).to_numpy()
    if known.sum() < len(frame):
        logger.info("cohort split: %d rows without an enrolment start left out", (~known).sum())

    def part(mask: np.ndarray) -> pd.DataFrame:
        return frame.loc[mask].reset_index(drop=True)

    return SplitFrames(train=part(train), calibration=part(calibration), test=part(test))


def with_groups(frame: pd.DataFrame, students: pd.DataFrame) -> pd.DataFrame:
    """Attach the fairness-audit attributes (never features) from the students table."""
    cols = ["student_id"] + [g for g in DEFAULT_GROUPS if g in students.columns]
    return frame.merge(students.loc[:, cols], on="student_id", how="left")
